// The comparison server for `loadtest/run compare`: the same chat shape as Chorus on Socket.IO 4.8
// with @socket.io/redis-adapter, so several processes form one cluster over Redis pub/sub. It does
// what a typical Socket.IO chat does and no more: "join" puts the socket in a room, "send" is
// acknowledged and broadcast to the room (sender included) with a per-process counter as "seq".
// Nothing is persisted and nothing is replayed after a reconnect.
//   PORT=3000 REDIS_URL=redis://127.0.0.1:6379 node server.js
const { createServer } = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

async function main() {
  const port = Number(process.env.PORT || 3000);
  const http = createServer();
  // WebSocket only (the bench speaks it directly), no per-message compression: as Chorus runs.
  const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false });
  if (process.env.REDIS_URL) {
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  let seq = 0;
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack({ room });
    });
    socket.on("send", (msg, ack) => {
      if (!msg || typeof msg.room !== "string" || !socket.rooms.has(msg.room)) {
        if (typeof ack === "function") ack({ error: "not_joined" });
        return;
      }
      seq += 1;
      io.to(msg.room).emit("message", { room: msg.room, body: msg.body, seq });
      if (typeof ack === "function") ack({ seq });
    });
  });
  http.listen(port, "127.0.0.1", () => console.log(`socket.io listening on ${port}`));
  process.on("SIGTERM", () => process.exit(0));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
