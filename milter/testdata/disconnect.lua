-- A client that goes away in the middle of a body, then a new connection that works.
conn = mt.connect(os.getenv("MILTER_SOCKET"), 20, 0.25)
if conn == nil then error "mt.connect() failed" end
mt.conninfo(conn, "client.test", "198.51.100.7")
mt.helo(conn, "client.test")
mt.mailfrom(conn, "<a@sender.test>")
mt.rcptto(conn, "<alice@remote.test>")
mt.header(conn, "Subject", "cut")
mt.eoh(conn)
mt.bodystring(conn, "half a message\r\n")
mt.disconnect(conn, false)

conn = mt.connect(os.getenv("MILTER_SOCKET"), 20, 0.25)
if conn == nil then error "mt.connect() after a disconnect failed" end
mt.conninfo(conn, "client.test", "198.51.100.7")
mt.helo(conn, "client.test")
mt.mailfrom(conn, "<a@sender.test>")
mt.rcptto(conn, "<alice@remote.test>")
mt.header(conn, "Subject", "hold")
mt.eoh(conn)
mt.bodystring(conn, "x\r\n")
mt.eom(conn)
if mt.getreply(conn) ~= SMFIR_ACCEPT then error "eom: not accepted" end
if not mt.eom_check(conn, MT_QUARANTINE) then error "eom: no quarantine" end
mt.disconnect(conn)
