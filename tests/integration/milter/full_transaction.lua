-- Every milter command on one connection, as Postfix sends them with milter_protocol = 6:
-- negotiation, macros, connect, helo, an unknown SMTP command, mail, two rcpts, data,
-- headers (with forged X-Spam-* fields), eoh, body, end of message; then abort and a second
-- message on the same connection. Run by tests/integration/test_miltertest.py with
-- -D port=PORT -D qid=QUEUE_ID.

local function check(cond, what)
  if not cond then error("FAILED: " .. what, 2) end
end
local function reply_is(conn, want, what)
  local got = mt.getreply(conn)
  check(got == want, what .. ": reply " .. tostring(got) .. ", wanted " .. tostring(want))
end

mt.set_timeout(10)
local conn = mt.connect("inet:" .. port .. "@127.0.0.1")
check(conn ~= nil, "connect to spamward")

-- Negotiation: miltertest offers everything (version 6). spamward asks for header changes and
-- additions and a macro list, SKIP and HDR_LEADSPC, no NO* step (every event), and the NR_*
-- steps of the commands it always continues.
check(mt.negotiate(conn, nil, nil, nil) == nil, "negotiate")
check(mt.test_action(conn, SMFIF_ADDHDRS), "requests ADDHDRS")
check(mt.test_action(conn, SMFIF_CHGHDRS), "requests CHGHDRS")
check(mt.test_action(conn, SMFIF_SETSYMLIST), "requests SETSYMLIST (macro lists)")
check(not mt.test_action(conn, SMFIF_CHGBODY), "never changes the body")
check(mt.test_option(conn, SMFIP_SKIP), "uses SKIP")
check(mt.test_option(conn, SMFIP_HDR_LEADSPC), "uses HDR_LEADSPC")
for _, opt in ipairs({SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOMAIL, SMFIP_NORCPT, SMFIP_NOBODY,
                      SMFIP_NOHDRS, SMFIP_NOEOH, SMFIP_NOUNKNOWN, SMFIP_NODATA}) do
  check(not mt.test_option(conn, opt), "wants every event")
end
-- No reply where it always continues (miltertest then takes CONTINUE without reading, as
-- Postfix does); MAIL, RCPT, DATA, body and end of message are answered.
for _, opt in ipairs({SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_UNKN, SMFIP_NR_HDR, SMFIP_NR_EOH}) do
  check(mt.test_option(conn, opt), "no reply asked for option " .. tostring(opt))
end
for _, opt in ipairs({SMFIP_NR_MAIL, SMFIP_NR_RCPT, SMFIP_NR_DATA, SMFIP_NR_BODY}) do
  check(not mt.test_option(conn, opt), "replies to option " .. tostring(opt))
end

-- Connect: bracketed hostname (no verified name); the macros give Postfix's own lookups.
check(mt.macro(conn, SMFIC_CONNECT, "{daemon_addr}", "192.0.2.25", "{daemon_port}", "25",
               "{client_name}", "mx.example.net", "{client_ptr}", "mx.example.net") == nil,
      "connect macros")
check(mt.conninfo(conn, "[192.0.2.10]", "192.0.2.10") == nil, "conninfo")
reply_is(conn, SMFIR_CONTINUE, "connect")
check(mt.helo(conn, "mx.example.net") == nil, "helo")
reply_is(conn, SMFIR_CONTINUE, "helo")
check(mt.unknown(conn, "XYZZY now") == nil, "unknown")
reply_is(conn, SMFIR_CONTINUE, "unknown command")

check(mt.macro(conn, SMFIC_MAIL, "i", qid, "{auth_authen}", "") == nil, "mail macros")
check(mt.mailfrom(conn, "<alice@example.net>", "SIZE=300") == nil, "mail")
reply_is(conn, SMFIR_CONTINUE, "mail")
check(mt.rcptto(conn, "<bob@example.org>") == nil, "rcpt 1")
reply_is(conn, SMFIR_CONTINUE, "rcpt 1")
check(mt.rcptto(conn, "<carol@example.org>") == nil, "rcpt 2")
reply_is(conn, SMFIR_CONTINUE, "rcpt 2")
check(mt.data(conn) == nil, "data")
reply_is(conn, SMFIR_CONTINUE, "data")

-- Header values as an MTA sends them with HDR_LEADSPC: the leading space is part of the value.
check(mt.header(conn, "From", " Alice <alice@example.net>") == nil, "header From")
reply_is(conn, SMFIR_CONTINUE, "header")
check(mt.header(conn, "X-Spam-Flag", " YES") == nil, "forged header 1")
check(mt.header(conn, "Subject", " milter test\n\tfolded") == nil, "folded Subject")
check(mt.header(conn, "x-spam-flag", " YES") == nil, "forged header 2")
check(mt.header(conn, "X-Spamward-Symbols", " FORGED(-100.00)") == nil, "forged header 3")
reply_is(conn, SMFIR_CONTINUE, "headers")
check(mt.eoh(conn) == nil, "eoh")
reply_is(conn, SMFIR_CONTINUE, "eoh")
check(mt.bodystring(conn, "Hello Bob,\r\nthis is a test.\r\n") == nil, "body")
reply_is(conn, SMFIR_CONTINUE, "body")
check(mt.eom(conn) == nil, "eom")
reply_is(conn, SMFIR_ACCEPT, "end of message")

-- Forged fields deleted by index per name, then spamward's own added.
check(mt.eom_check(conn, MT_HDRDELETE, "X-Spam-Flag", 1), "X-Spam-Flag #1 deleted")
check(mt.eom_check(conn, MT_HDRDELETE, "X-Spam-Flag", 2), "X-Spam-Flag #2 deleted")
check(mt.eom_check(conn, MT_HDRDELETE, "X-Spamward-Symbols", 1), "X-Spamward-Symbols deleted")
check(not mt.eom_check(conn, MT_HDRDELETE, "Subject"), "Subject kept")
check(mt.eom_check(conn, MT_HDRADD, "X-Spam-Score"), "X-Spam-Score added")
check(mt.eom_check(conn, MT_HDRADD, "X-Spamward-Symbols"), "X-Spamward-Symbols added")
check(not mt.eom_check(conn, MT_HDRADD, "X-Spam-Flag"), "not tagged: no X-Spam-Flag")
local score = mt.getheader(conn, "X-Spam-Score", 0)
check(score ~= nil and string.match(score, "^ %-?%d+%.%d%d$") ~= nil,
      "X-Spam-Score value (leading space negotiated): " .. tostring(score))
local symbols = mt.getheader(conn, "X-Spamward-Symbols", 0)
check(symbols ~= nil and not string.find(symbols, "FORGED", 1, true), "own symbols only")

-- Abort, then a second message on the same connection: a fresh transaction.
check(mt.abort(conn) == nil, "abort")
check(mt.mailfrom(conn, "<>") == nil, "second mail (a bounce)")
reply_is(conn, SMFIR_CONTINUE, "second mail")
check(mt.rcptto(conn, "<bob@example.org>") == nil, "second rcpt")
reply_is(conn, SMFIR_CONTINUE, "second rcpt")
check(mt.header(conn, "Subject", " second") == nil, "second header")
check(mt.eoh(conn) == nil, "second eoh")
check(mt.bodystring(conn, "second body\r\n") == nil, "second body")
check(mt.eom(conn) == nil, "second eom")
reply_is(conn, SMFIR_ACCEPT, "second end of message")
check(not mt.eom_check(conn, MT_HDRDELETE), "nothing to delete in the second message")
check(mt.eom_check(conn, MT_HDRADD, "X-Spam-Score"), "second X-Spam-Score")

mt.disconnect(conn)
mt.echo("full_transaction: ok")
