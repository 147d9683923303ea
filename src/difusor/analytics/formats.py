"""Access-log formats: recognising them, and the SQL that turns their lines into request fields.

DuckDB does the per-line work (a Python loop cannot reach the hundreds of thousands of lines
per second the ingest needs): each format is one ``SELECT`` over the file (``source_sql``)
that yields ``ts`` (TIMESTAMPTZ), ``ip``, ``method``, ``path``, ``query`` (no leading "?"),
``status``, ``bytes``, ``referer``, ``ua``. Combined-shaped lines are read by DuckDB's CSV
reader as typed columns (``csv_sql``: it parses time, status and size itself); every format can
also be read as one VARCHAR column ``line`` taken apart by SQL functions (``source_sql``, the
general way: combined lines split at their quotes, RE2 for the odd ones). A line it cannot
read gets a NULL ``ts``/``status`` or an empty ``ip`` and is counted as not understood by the
caller.

Formats (``--format``; ``auto`` looks at the first non-empty lines):
    difusor      the embedded server's JSON lines (serve/accesslog.py)
    nginx-json   the JSON access log difusor's nginx config writes (serve/nginxconf.py)
    combined     Apache / nginx "combined" (also "common", without referrer and agent)
    varnishncsa  varnishncsa's default output: combined-shaped with absolute URLs; rows are
                 edge rows. Auto-detection cannot tell it from combined and says combined:
                 pass ``--format varnishncsa`` (or set it in [[analytics.sources]]).
    cloudfront   CloudFront standard logs (TSV with a ``#Fields:`` header, agent URL-encoded)
    cloudflare   Cloudflare Logpush, http_requests dataset (JSON lines)
    fastly       Fastly log streaming with the recommended JSON format (common field names)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from difusor.errors import LogFormatError

EDGE_FORMATS = frozenset({"varnishncsa", "cloudfront", "cloudflare", "fastly"})

#: CloudFront's documented field order, used when a file carries no ``#Fields:`` line.
_CLOUDFRONT = (
    "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status "
    "cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id "
    "x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher "
    "x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port "
    "time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len "
    "sc-range-start sc-range-end"
)
CLOUDFRONT_FIELDS = tuple(_CLOUDFRONT.split())

_COMBINED = re.compile(
    rb'^\S+ \S+ .*?\[\d{1,2}/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "[^"]*" \d{3} (?:\d+|-)')

# Lines whose quotes are escaped (Apache writes \") miss the fast split; RE2 reads them.
_COMBINED_RE = (r'^(\S+) \S+ .*?\[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3} \S+)'
                r'(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?')


@dataclass(frozen=True)
class Format:
    name: str
    edge: bool
    comments: bool = False  # lines starting with "#" are headers, not requests


def get(name: str) -> Format:
    return Format(name, name in EDGE_FORMATS, comments=name == "cloudfront")


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def detect(head: bytes, origin: str) -> str:
    """The format of a log from its first bytes (whole lines); LogFormatError when unknown."""
    lines = [ln.strip() for ln in head.split(b"\n") if ln.strip()][:8]
    if not lines:
        raise LogFormatError(f"{origin}: está vacío, no hay líneas para reconocer el formato")
    if lines[0].startswith((b"#Version", b"#Fields")):
        return "cloudfront"
    votes: dict[str, int] = {}
    for line in lines:
        name = _detect_line(line)
        if name:
            votes[name] = votes.get(name, 0) + 1
    if votes:
        return max(votes, key=lambda k: votes[k])
    raise LogFormatError(
        f"{origin}: no reconozco el formato del registro (primera línea: "
        f"{lines[0][:80].decode('utf-8', 'replace')!r}); indícalo con --format")


def _detect_line(line: bytes) -> str | None:
    if line.startswith(b"{"):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        if "ClientIP" in obj or "EdgeStartTimestamp" in obj or "ClientRequestURI" in obj:
            return "cloudflare"
        if "client_ip" in obj and ("url" in obj or "response_status" in obj):
            return "fastly"
        if "ip" in obj and "user_agent" in obj and "time" in obj:
            # Same fields; the embedded server writes UTC ("Z"), nginx the local offset.
            return "difusor" if str(obj["time"]).endswith("Z") else "nginx-json"
        return None
    if _COMBINED.match(line):
        return "combined"
    if line.count(b"\t") >= 10 and re.match(rb"^\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\t", line):
        return "cloudfront"
    return None


def cloudfront_fields(head: bytes) -> list[str]:
    """The field names of the file's ``#Fields:`` line (the documented order when absent)."""
    for line in head.split(b"\n")[:20]:
        if line.startswith(b"#Fields:"):
            return line[len(b"#Fields:"):].decode("ascii", "replace").split()
    return list(CLOUDFRONT_FIELDS)


# -- the SELECTs ---------------------------------------------------------------------

_TARGET = """
    CASE WHEN {t} LIKE 'http%://%' THEN regexp_extract({t}, '^[A-Za-z]+://[^/]*(.*)$', 1)
         ELSE {t} END"""


def _split_target(target: str) -> tuple[str, str]:
    """(path, query) SQL for a request target that may carry a query or a full URL. Most are
    a bare path: taken as they are (the general way cost a fifth of a combined line's
    parse)."""
    t = _TARGET.format(t=target)
    return (f"CASE WHEN starts_with({target}, '/') AND NOT contains({target}, '?') "
            f"THEN {target} ELSE split_part({t}, '?', 1) END",
            f"CASE WHEN contains({target}, '?') THEN {target}[strpos({target}, '?') + 1:] "
            "ELSE '' END")


def _when(expr: str) -> str:
    """An ISO 8601 string or a Unix time in s, ms, µs or ns as TIMESTAMPTZ."""
    return f"""CASE
        WHEN regexp_full_match({expr}, '[0-9]+(\\.[0-9]+)?') THEN
            CASE WHEN strpos({expr}, '.') > 0 THEN try(to_timestamp(try_cast({expr} AS DOUBLE)))
                 WHEN length({expr}) >= 18 THEN try(make_timestamptz(try_cast({expr} AS BIGINT) // 1000))
                 WHEN length({expr}) >= 15 THEN try(make_timestamptz(try_cast({expr} AS BIGINT)))
                 WHEN length({expr}) >= 12 THEN try(make_timestamptz(try_cast({expr} AS BIGINT) * 1000))
                 ELSE try(to_timestamp(try_cast({expr} AS DOUBLE))) END
        ELSE try_cast(regexp_replace({expr}, '(GMT|UTC)$', 'Z') AS TIMESTAMPTZ) END"""


#: A log read as one VARCHAR column ``line`` per line, for the formats split by SQL.
# The delimiter is the control character itself (U+0001, which nginx and Apache escape), not
# the four characters backslash-x-0-1: those would split the TLS-handshake junk lines nginx
# writes as "\x16\x03\x01…" (its escaping of non-printable bytes).
_LINES = ("columns={'line': 'VARCHAR'}, delim='\x01', quote='', escape='', header=false, "
          "auto_detect=false, strict_mode=false, ignore_errors=true")


def source_sql(fmt: Format, path: str, fields: list[str] | None = None) -> str:
    """The SELECT yielding the request fields of every non-empty line of the file ``path``
    (every format, every line: the general way; see ``csv_sql`` for the fast one)."""
    lines = f"SELECT line FROM read_csv({_sql_str(path)}, {_LINES}) WHERE line IS NOT NULL"
    if fmt.name in ("combined", "varnishncsa"):
        return _combined_lines(lines)
    return select_sql(fmt, f"({lines})", fields)


def rejected_sql(rejects: str) -> str:
    """The request fields of the lines ``csv_sql`` refused (each once, in file order), the
    general way."""
    return _combined_lines(f"SELECT any_value(csv_line) AS line FROM {rejects} GROUP BY line "
                           "ORDER BY line")


def select_sql(fmt: Format, rel: str, fields: list[str] | None = None) -> str:
    """The SELECT over ``rel`` (one VARCHAR column ``line``) yielding the request fields
    (combined-shaped formats are read from files by ``source_sql`` only)."""
    if fmt.name in ("difusor", "nginx-json"):
        return _json(rel, {"t": "time", "ip": "ip", "m": "method", "p": "path", "q": "query",
                           "s": "status", "b": "bytes", "r": "referer", "u": "user_agent"},
                     target=False, iso=True)
    if fmt.name == "cloudflare":
        return _json(rel, {"t": "EdgeStartTimestamp", "ip": "ClientIP", "m": "ClientRequestMethod",
                           "p": "ClientRequestURI", "s": "EdgeResponseStatus",
                           "b": "EdgeResponseBytes", "r": "ClientRequestReferer",
                           "u": "ClientRequestUserAgent"}, target=True)
    if fmt.name == "fastly":
        return _fastly(rel)
    if fmt.name == "cloudfront":
        return _cloudfront(rel, fields or list(CLOUDFRONT_FIELDS))
    raise LogFormatError(f"formato desconocido «{fmt.name}»")


def _combined_fields(rel: str) -> str:
    """Request fields from ip, t (inside the brackets), req, sb ("status bytes"), ref, ua."""
    path, query = _split_target("target")
    return f"""
SELECT try_strptime(t, '%d/%b/%Y:%H:%M:%S %z') AS ts, ip, words[1] AS method,
       {path} AS path, {query} AS query,
       try_cast(split_part(sb, ' ', 1) AS USMALLINT) AS status,
       coalesce(try_cast(split_part(sb, ' ', 2) AS UBIGINT), 0) AS bytes,
       CASE WHEN ref = '-' THEN '' ELSE coalesce(ref, '') END AS referer,
       CASE WHEN ua = '-' THEN '' ELSE coalesce(ua, '') END AS ua
FROM (SELECT *, coalesce(words[2], '') AS target
      FROM (SELECT *, string_split(req, ' ') AS words FROM ({rel})))"""


def _combined_lines(rel: str) -> str:
    """Combined lines (``rel``: one VARCHAR column ``line``) split at their quotes with
    ``string_split``: a line with exactly six quotes, ending in one, is taken apart with a few
    string functions; any other (Apache's escaped quotes, "common" lines, junk) goes through
    RE2, only those rows."""
    names = ("ip", "t", "req", "sb", "ref", "ua")
    fast = ("split_part(x[1], ' ', 1)", "x[1][strpos(x[1], '[') + 1:strpos(x[1], ']') - 1]",
            "x[2]", "trim(x[3])", "x[4]", "x[6]")
    cols = ",\n       ".join(
        f"CASE WHEN six THEN {f} ELSE regexp_extract(line, {_sql_str(_COMBINED_RE)}, {i + 1}) "
        f"END AS {n}" for i, (f, n) in enumerate(zip(fast, names, strict=True)))
    return _combined_fields(f"""
  SELECT {cols}
  FROM (SELECT line, x, coalesce(len(x) = 7 AND x[7] = '' AND x[5] = ' '
                               -- a field ending in a backslash: its quote was escaped
                               AND NOT (suffix(x[2], '\\') OR suffix(x[4], '\\')
                                        OR suffix(x[6], '\\')), FALSE) AS six
        FROM (SELECT line, string_split(line, '"') AS x FROM ({rel})))""")


# Space-separated, '"'-quoted: ip ident user [date zone] "request" status bytes "referer"
# "agent", then up to six more fields (nginx's "main" adds X-Forwarded-For), ignored.
_CSV_COLUMNS = ("{'ip': 'VARCHAR', 'ident': 'VARCHAR', 'user': 'VARCHAR', 'd': 'TIMESTAMP', "
                "'zone': 'VARCHAR', 'req': 'VARCHAR', 'status': 'USMALLINT', 'bytes': 'UBIGINT', "
                "'ref': 'VARCHAR', 'ua': 'VARCHAR', "
                + ", ".join(f"'extra{i}': 'VARCHAR'" for i in range(6)) + "}")
# "-0600]" → microseconds east of UTC (NULL when it is not a zone).
_ZONE_US = ("CASE WHEN length(zone) = 6 AND zone[6] = ']' THEN "
            "(CASE zone[1] WHEN '-' THEN -1 WHEN '+' THEN 1 END) * "
            "(try_cast(zone[2:3] AS UTINYINT) * 3600000000 "
            "+ try_cast(zone[4:5] AS UTINYINT) * 60000000) END")


def csv_sql(path: str, rejects: str | None = None, zone: str | None = None) -> str:
    """Combined-shaped lines of ``path`` as typed CSV columns: the reader parses the time,
    status and size itself (no per-row string splitting nor strptime), several times cheaper
    than ``source_sql``. Lines it refuses (a user name with a space, more fields than it
    expects, a field it cannot cast) are left out, and recorded in the temp table
    ``rejects`` when given, for ``rejected_sql`` to read the general way. Not for lines
    with backslash-escaped quotes (Apache): it would split them at the escaped quote.
    ``zone`` ("-0600", see ``zone_of``), the log's usual offset, is recognised by one string
    comparison, the others by arithmetic (a third of the time column's cost)."""
    errors = (f"store_rejects=true, rejects_table={_sql_str(rejects)}, "
              f"rejects_scan={_sql_str(rejects + '_scan')}" if rejects else "ignore_errors=true")
    opts = (f"columns={_CSV_COLUMNS}, delim=' ', quote='\"', escape='\"', header=false, "
            "auto_detect=false, strict_mode=false, null_padding=true, nullstr='-', "
            # measured on 2 cores: a fifth less CPU than the default buffers
            f"buffer_size={32 << 20}, timestampformat='[%d/%b/%Y:%H:%M:%S', {errors}")
    path_sql, query = _split_target("target")
    offset = _ZONE_US
    if zone and _ZONE.fullmatch(zone):
        us = (-1 if zone[0] == "-" else 1) * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        offset = f"CASE zone WHEN '{zone}]' THEN {us * 1_000_000} ELSE {_ZONE_US} END"
    return f"""
SELECT make_timestamptz(epoch_us(d) - {offset}) AS ts, coalesce(ip, '-') AS ip,
       words[1] AS method, {path_sql} AS path, {query} AS query, status,
       coalesce(bytes, 0) AS bytes, coalesce(ref, '') AS referer, coalesce(ua, '') AS ua
FROM (SELECT *, coalesce(words[2], '') AS target
      FROM (SELECT *, string_split(req, ' ') AS words FROM read_csv({_sql_str(path)}, {opts})))"""


_ZONE = re.compile(r"[+-]\d{4}")
_STAMP = re.compile(rb"\[\d\d/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d ([+-]\d{4})\]")


def zone_of(head: bytes) -> str | None:
    """The offset ("-0600") of the first combined-style time in a log's first bytes."""
    found = _STAMP.search(head)
    return found.group(1).decode() if found else None


def _json(rel: str, keys: dict[str, str], *, target: bool, iso: bool = False) -> str:
    struct = "{" + ",".join(f'"{k}":"VARCHAR"' for k in dict.fromkeys(keys.values())) + "}"
    j = {alias: f'j."{key}"' for alias, key in keys.items()}
    if target:
        path, query = _split_target(j["p"])
    else:
        path, query = j["p"], f"coalesce({j['q']}, '')"
    return f"""
SELECT {f"try_cast({j['t']} AS TIMESTAMPTZ)" if iso else _when(j['t'])} AS ts,
       coalesce({j['ip']}, '') AS ip, {j['m']} AS method,
       {path} AS path, {query} AS query, try_cast({j['s']} AS USMALLINT) AS status,
       coalesce(try_cast({j['b']} AS UBIGINT), 0) AS bytes,
       coalesce({j['r']}, '') AS referer, coalesce({j['u']}, '') AS ua
FROM (SELECT try(from_json(line, {_sql_str(struct)})) AS j FROM {rel})"""


_FASTLY_KEYS = {  # alias → the names seen in Fastly's recommended and common formats
    "t": ("timestamp", "time_start", "time_end", "time"),
    "ip": ("client_ip", "ip"),
    "m": ("request_method", "request", "method"),
    "p": ("url", "request_url", "path"),
    "s": ("response_status", "status"),
    "b": ("response_body_size", "resp_body_size", "response_bytes", "bytes"),
    "r": ("request_referer", "referer"),
    "u": ("request_user_agent", "user_agent"),
}


def _fastly(rel: str) -> str:
    names = [n for group in _FASTLY_KEYS.values() for n in group]
    struct = "{" + ",".join(f'"{n}":"VARCHAR"' for n in dict.fromkeys(names)) + "}"
    c = {alias: "coalesce(" + ", ".join(f'j."{n}"' for n in group) + ")"
         for alias, group in _FASTLY_KEYS.items()}
    path, query = _split_target("f.p")
    return f"""
SELECT {_when('f.t')} AS ts, coalesce(f.ip, '') AS ip, f.m AS method, {path} AS path,
       {query} AS query, try_cast(f.s AS USMALLINT) AS status,
       coalesce(try_cast(f.b AS UBIGINT), 0) AS bytes,
       coalesce(f.r, '') AS referer, coalesce(f.u, '') AS ua
FROM (SELECT {", ".join(f"{expr} AS {alias}" for alias, expr in c.items())}
      FROM (SELECT try(from_json(line, {_sql_str(struct)})) AS j FROM {rel})) AS f"""


def _cloudfront(rel: str, fields: list[str]) -> str:
    def col(name: str, default: str = "''") -> str:
        if name not in fields:
            return default
        return f"f[{fields.index(name) + 1}]"

    def dash(expr: str) -> str:
        return f"CASE WHEN {expr} = '-' THEN '' ELSE coalesce({expr}, '') END"

    ua = dash(col("cs(User-Agent)"))
    return f"""
SELECT try_cast({col('date', 'NULL')} || ' ' || {col('time', 'NULL')} || '+00' AS TIMESTAMPTZ) AS ts,
       {col('c-ip')} AS ip, {col('cs-method')} AS method, {col('cs-uri-stem')} AS path,
       {dash(col('cs-uri-query'))} AS query,
       try_cast({col('sc-status', 'NULL')} AS USMALLINT) AS status,
       coalesce(try_cast({col('sc-bytes', 'NULL')} AS UBIGINT), 0) AS bytes,
       {dash(col('cs(Referer)'))} AS referer,
       coalesce(try(url_decode({ua})), {ua}) AS ua
FROM (SELECT string_split(line, chr(9)) AS f FROM {rel} WHERE NOT starts_with(line, '#'))"""
