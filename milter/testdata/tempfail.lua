-- Temporary failures with portcullis's code: at RCPT and at end of message.
conn = mt.connect(os.getenv("MILTER_SOCKET"), 20, 0.25)
if conn == nil then error "mt.connect() failed" end
if mt.conninfo(conn, "client.test", "198.51.100.7") ~= nil then error "mt.conninfo() failed" end
mt.helo(conn, "client.test")
mt.mailfrom(conn, "<a@sender.test>")
if mt.rcptto(conn, "<busy@remote.test>") ~= nil then error "mt.rcptto() failed" end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error "rcpt: want a reply code" end
if mt.rcptto(conn, "<bob@remote.test>") ~= nil then error "mt.rcptto() failed" end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error "rcpt 2: unexpected reply" end
mt.header(conn, "Subject", "later")
mt.eoh(conn)
mt.bodystring(conn, "x\r\n")
mt.eom(conn)
if not mt.eom_check(conn, MT_SMTPREPLY, "451", "4.7.2", "content later") then error "eom: want 451 4.7.2 content later" end
mt.disconnect(conn)
