from difusor.cli import main

main()
