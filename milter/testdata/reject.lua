-- Refusals with portcullis's code: at MAIL, at RCPT, at end of message.
conn = mt.connect(os.getenv("MILTER_SOCKET"), 20, 0.25)
if conn == nil then error "mt.connect() failed" end
if mt.conninfo(conn, "client.test", "198.51.100.7") ~= nil then error "mt.conninfo() failed" end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error "connect: unexpected reply" end
mt.helo(conn, "client.test")
if mt.mailfrom(conn, "<spammer@bad.test>") ~= nil then error "mt.mailfrom() failed" end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error "mail: want a reply code" end
mt.abort(conn)
if mt.mailfrom(conn, "<a@sender.test>") ~= nil then error "mt.mailfrom() failed" end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error "mail 2: unexpected reply" end
if mt.rcptto(conn, "<alice@remote.test>") ~= nil then error "mt.rcptto() failed" end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error "rcpt: unexpected reply" end
mt.header(conn, "Subject", "reject me")
mt.eoh(conn)
mt.bodystring(conn, "spam\r\n")
if mt.eom(conn) ~= nil then error "mt.eom() failed" end
if mt.getreply(conn) ~= SMFIR_REPLYCODE then error "eom: want a reply code" end
if not mt.eom_check(conn, MT_SMTPREPLY, "554", "5.7.1", "content refused") then error "eom: want 554 5.7.1 content refused" end
mt.disconnect(conn)
