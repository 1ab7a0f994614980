-- Body chunks over 64 KiB are accepted; past [limits] max_message_bytes (200000 in the test
-- config) spamward answers SMFIR_SKIP when the MTA offered SMFIP_SKIP, else CONTINUE, and in
-- both cases scores what it read and accepts the message. -D port=PORT

local function check(cond, what)
  if not cond then error("FAILED: " .. what, 2) end
end
local function reply_is(conn, want, what)
  local got = mt.getreply(conn)
  check(got == want, what .. ": reply " .. tostring(got) .. ", wanted " .. tostring(want))
end

local chunk = string.rep(string.rep("x", 78) .. "\r\n", 875)  -- 70,000 bytes
check(#chunk == 70000, "chunk size")

local function message(conn, expect_skip)
  check(mt.conninfo(conn, "mx.example.net", "192.0.2.10") == nil, "conninfo")
  reply_is(conn, SMFIR_CONTINUE, "connect")
  check(mt.mailfrom(conn, "<alice@example.net>") == nil, "mail")
  check(mt.rcptto(conn, "<bob@example.org>") == nil, "rcpt")
  check(mt.header(conn, "Subject", " large") == nil, "header")
  check(mt.eoh(conn) == nil, "eoh")
  check(mt.bodystring(conn, chunk) == nil, "chunk 1")
  reply_is(conn, SMFIR_CONTINUE, "a 70,000-byte chunk is accepted")
  check(mt.bodystring(conn, chunk) == nil, "chunk 2")
  reply_is(conn, SMFIR_CONTINUE, "chunk 2 (140,000 bytes in all)")
  check(mt.bodystring(conn, chunk) == nil, "chunk 3")
  if expect_skip then
    reply_is(conn, SMFIR_SKIP, "past max_message_bytes: SKIP")
  else
    reply_is(conn, SMFIR_CONTINUE, "past max_message_bytes without SMFIP_SKIP: CONTINUE")
    check(mt.bodystring(conn, chunk) == nil, "chunk 4")
    reply_is(conn, SMFIR_CONTINUE, "chunk 4 read and dropped")
  end
  check(mt.eom(conn) == nil, "eom")
  reply_is(conn, SMFIR_ACCEPT, "a large message is never refused for its size")
  check(mt.eom_check(conn, MT_HDRADD, "X-Spam-Score"), "scored")
end

mt.set_timeout(10)
local conn = mt.connect("inet:" .. port .. "@127.0.0.1")
check(conn ~= nil, "connect")
check(mt.negotiate(conn, nil, nil, nil) == nil, "negotiate")
message(conn, true)
mt.disconnect(conn)

-- An MTA without SMFIP_SKIP (0x1ff: every action, the oldest protocol steps only).
conn = mt.connect("inet:" .. port .. "@127.0.0.1")
check(conn ~= nil, "connect 2")
check(mt.negotiate(conn, 6, 0x1ff, 0x1ff) == nil, "negotiate without SKIP")
check(not mt.test_option(conn, SMFIP_SKIP), "SKIP not used when not offered")
message(conn, false)
mt.disconnect(conn)
mt.echo("large_body: ok")
