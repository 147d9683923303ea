"""Where blocks are enforced outside the embedded server: nginx, nftables, Cloudflare lists."""
