-- Refusals: a deny-listed client at MAIL (SMFIR_REPLYCODE), and greylisting a message with
-- two recipients: both RCPTs continue, DATA is deferred once (SMFIR_REPLYCODE). The client
-- with HELO "greylistme" scores HELO_NOT_FQDN = 3.5 ([scores] in the test config), over the
-- greylist threshold. -D port=PORT -D denied=ADDRESS

local function check(cond, what)
  if not cond then error("FAILED: " .. what, 2) end
end
local function reply_is(conn, want, what)
  local got = mt.getreply(conn)
  check(got == want, what .. ": reply " .. tostring(got) .. ", wanted " .. tostring(want))
end

mt.set_timeout(10)
local conn = mt.connect("inet:" .. port .. "@127.0.0.1")
check(conn ~= nil, "connect")
check(mt.negotiate(conn, nil, nil, nil) == nil, "negotiate")
check(mt.conninfo(conn, "[" .. denied .. "]", denied) == nil, "conninfo")
-- Decided at CONNECT, answered at MAIL: MTAs replace a connect-stage reply text with their own.
reply_is(conn, SMFIR_CONTINUE, "deny-listed client at connect")
check(mt.helo(conn, "mx.example.net") == nil, "helo")
reply_is(conn, SMFIR_CONTINUE, "deny-listed client at helo")
check(mt.mailfrom(conn, "<someone@example.net>") == nil, "mail")
reply_is(conn, SMFIR_REPLYCODE, "deny-listed client at MAIL")
mt.disconnect(conn)

conn = mt.connect("inet:" .. port .. "@127.0.0.1")
check(conn ~= nil, "connect 2")
check(mt.negotiate(conn, nil, nil, nil) == nil, "negotiate 2")
check(mt.macro(conn, SMFIC_CONNECT, "{client_name}", "grey.example.net", "{client_ptr}",
               "grey.example.net") == nil, "macros")
check(mt.conninfo(conn, "grey.example.net", "192.0.2.77") == nil, "conninfo 2")
reply_is(conn, SMFIR_CONTINUE, "connect 2")
check(mt.helo(conn, "greylistme") == nil, "helo")
reply_is(conn, SMFIR_CONTINUE, "helo")
check(mt.mailfrom(conn, "<someone@example.net>") == nil, "mail")
reply_is(conn, SMFIR_CONTINUE, "mail")
check(mt.rcptto(conn, "<bob@example.org>") == nil, "rcpt 1")
reply_is(conn, SMFIR_CONTINUE, "greylisting is never answered at RCPT (1)")
check(mt.rcptto(conn, "<carol@example.org>") == nil, "rcpt 2")
reply_is(conn, SMFIR_CONTINUE, "greylisting is never answered at RCPT (2)")
check(mt.data(conn) == nil, "data")
reply_is(conn, SMFIR_REPLYCODE, "the whole message deferred at DATA")
mt.disconnect(conn)
mt.echo("refusals: ok")
