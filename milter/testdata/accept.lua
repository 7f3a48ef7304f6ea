-- A message that passes: every stage continues, end of message accepts and inserts the
-- policy's and the rules' headers. miltertest grants SMFIP_HDR_LEADSPC, so a value
-- carries the space after the colon, as it is written into the message.
conn = mt.connect(os.getenv("MILTER_SOCKET"), 20, 0.25)
if conn == nil then error "mt.connect() failed" end
mt.macro(conn, SMFIC_CONNECT, "j", "mx.test", "{daemon_addr}", "127.0.0.1", "{daemon_port}", "25")
if mt.conninfo(conn, "client.test", "198.51.100.7") ~= nil then error "mt.conninfo() failed" end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error "connect: unexpected reply" end
if mt.helo(conn, "client.test") ~= nil then error "mt.helo() failed" end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error "helo: unexpected reply" end
mt.macro(conn, SMFIC_MAIL, "i", "ABC123", "{auth_authen}", "")
if mt.mailfrom(conn, "<a@sender.test>", "SIZE=200") ~= nil then error "mt.mailfrom() failed" end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error "mail: unexpected reply" end
if mt.rcptto(conn, "<alice@remote.test>") ~= nil then error "mt.rcptto() failed" end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error "rcpt: unexpected reply" end
if mt.header(conn, "From", "<a@sender.test>") ~= nil then error "mt.header() failed" end
if mt.header(conn, "Subject", "hello") ~= nil then error "mt.header() failed" end
if mt.eoh(conn) ~= nil then error "mt.eoh() failed" end
if mt.bodystring(conn, "hello world\r\n") ~= nil then error "mt.bodystring() failed" end
if mt.eom(conn) ~= nil then error "mt.eom() failed" end
if mt.getreply(conn) ~= SMFIR_ACCEPT then error "eom: not accepted" end
if not mt.eom_check(conn, MT_HDRINSERT, "X-Body-Check", " seen") then error "no X-Body-Check: seen" end
if not mt.eom_check(conn, MT_HDRINSERT, "X-Spam-Score", " 1.5") then error "no X-Spam-Score: 1.5" end
mt.disconnect(conn)
