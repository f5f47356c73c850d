// A listening socket with an accept queue of one, for a black-holed agent: the bench stops this
// process (SIGSTOP) and fills the queue, after which the kernel drops every new SYN, so a
// connect to it never completes.
//   node bench/servers/frozen.mjs       prints "listening <port>"
import net from 'node:net';

const server = net.createServer((socket) => socket.on('error', () => undefined));
server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
