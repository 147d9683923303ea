# difusor.vcl — Varnish 7 (paquete Debian «varnish») delante del difusor.
#
# Qué hace (ver docs/cdn.md):
#   * Respeta CDN-Cache-Control / Surrogate-Control (RFC 9213): el difusor los envía en
#     /json/main.json cuando un [[cdn]] tiene targeted_seconds > 0, y así el borde guarda main.json
#     unos segundos mientras los navegadores siguen recibiendo exactamente
#     «Cache-Control: no-cache, no-store, must-revalidate».
#   * Lo demás marcado no-store / no-cache / private pasa al origen sin guardarse.
#   * Acepta PURGE (una URL exacta) y BAN (expresión regular en X-Ban-Url) solo desde el ACL
#     «purgadores» (este equipo, por omisión). «difusor purge» y cada publicación los envían.
#   * Quita la cadena de consulta (?…) de los archivos del sitio: el origen la ignora, así que
#     «?_=123» solo serviría para saltarse el caché y llegar al origen (ARCHITECTURE: las cadenas de
#     consulta no deben permitir evadir el caché de los archivos estáticos).
#   * Agrega X-Cache: HIT o MISS.
#
# Uso: ajuste el backend (el servidor embebido, [web] listen, o nginx) y el ACL, y
#   varnishd -a :80 -f /etc/varnish/difusor.vcl -s malloc,512m
# En [[cdn]] del difusor.toml: kind = "varnish", edge_url = "http://ESTE-EQUIPO".

vcl 4.1;

import std;

# El origen: «difusor serve» ([web] listen) o nginx en este equipo.
backend origen {
    .host = "127.0.0.1";
    .port = "8080";
    .connect_timeout = 2s;
    .first_byte_timeout = 30s;
    .between_bytes_timeout = 10s;
}

# Quién puede purgar: el difusor mismo. Agregue la IP del equipo que publica si es otro.
acl purgadores {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgadores) {
            return (synth(403, "PURGE no permitido desde esta direccion"));
        }
        set req.url = regsub(req.url, "\?.*$", "");
        return (purge);
    }
    if (req.method == "BAN") {
        if (client.ip !~ purgadores) {
            return (synth(403, "BAN no permitido desde esta direccion"));
        }
        if (!req.http.X-Ban-Url) {
            return (synth(400, "Falta X-Ban-Url (expresion regular de rutas, p. ej. ^/json/)"));
        }
        ban("obj.http.X-Difusor-Url ~ " + req.http.X-Ban-Url);
        return (synth(200, "Ban registrado"));
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);  # el origen contesta 405
    }
    # Las respuestas propias del difusor (/_difusor/status.json, /_difusor/health) nunca se guardan,
    # salvo la sonda de «difusor check», que se guarda a propósito para probar que la purga funciona.
    if (req.url ~ "^/_difusor/" && req.url !~ "^/_difusor/sonda-cdn/[0-9a-f]+\.txt$") {
        return (pass);
    }
    # Todo lo demás es un archivo estático del corte, y el origen ignora la cadena de consulta:
    # sin esto, «/app.js?_=1», «?_=2»… serían objetos distintos y cada uno llegaría al origen.
    set req.url = regsub(req.url, "\?.*$", "");
    # Un sitio público de resultados no tiene nada personal: ni una cookie ni Authorization deben
    # hacer que una petición se salte el caché.
    unset req.http.Cookie;
    unset req.http.Authorization;
    return (hash);
}

sub vcl_hash {
    # Un sitio por Varnish: Host no forma parte de la llave. Un Host inventado tampoco evade el
    # caché, y un PURGE alcanza el objeto sin importar con qué Host lo pidieron los navegadores.
    hash_data(req.url);
    return (lookup);
}

sub vcl_backend_response {
    # La ruta guardada con el objeto: los BAN la comparan (y el «ban lurker» puede procesarlos).
    set beresp.http.X-Difusor-Url = bereq.url;

    # RFC 9213: CDN-Cache-Control manda sobre Surrogate-Control, y ambos sobre Cache-Control.
    if (beresp.http.CDN-Cache-Control ~ "(?i)(^|[ ,])max-age=[0-9]+") {
        set beresp.ttl = std.duration(
            regsub(beresp.http.CDN-Cache-Control, "(?i)^(.*[ ,])?max-age=([0-9]+).*$", "\2s"), 0s);
    } elsif (beresp.http.Surrogate-Control ~ "(?i)(^|[ ,])max-age=[0-9]+") {
        set beresp.ttl = std.duration(
            regsub(beresp.http.Surrogate-Control, "(?i)^(.*[ ,])?max-age=([0-9]+).*$", "\2s"), 0s);
    } else {
        # Sin indicación para el borde: no-store / no-cache / private no se guardan (cada
        # petición va al origen); lo demás sigue su Cache-Control (recursos: max-age=300).
        if (beresp.http.Cache-Control ~ "(?i)no-store|no-cache|private" || beresp.ttl <= 0s) {
            set beresp.uncacheable = true;
            set beresp.ttl = 120s;  # «hit-for-miss»: se recuerda que no se guarda
            return (deliver);
        }
        return (deliver);  # lo guardable, con el TTL de su Cache-Control
    }
    # Guardado por indicación dirigida: nunca servir una copia vencida (grace 0), porque un
    # main.json vencido es un corte viejo. La purga al publicar hace el resto.
    if (beresp.ttl <= 0s || beresp.status != 200) {
        set beresp.uncacheable = true;
        set beresp.ttl = 120s;
        return (deliver);
    }
    set beresp.grace = 0s;
    unset beresp.http.Surrogate-Control;  # es para este borde; CDN-Cache-Control sigue adelante
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    unset resp.http.X-Difusor-Url;
}
