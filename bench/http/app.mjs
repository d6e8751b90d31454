// One app of the HTTP benchmark in a process of its own: `node app.mjs <row> <express|fastify>`.
// Listens on 127.0.0.1 (a free port), tells the parent over IPC, and closes when told to.
import { NestFactory } from '@nestjs/core';
import { apps } from './apps.mjs';

const [row, adapter] = process.argv.slice(2);
const app = apps[row];
if (app === undefined || (adapter !== 'express' && adapter !== 'fastify')) {
  console.error(`usage: node app.mjs <${Object.keys(apps).join('|')}> <express|fastify>`);
  process.exit(2);
}

const built = await app.build();
const module = built.module ?? built;
let nest;
if (adapter === 'fastify') {
  const { FastifyAdapter } = await import('@nestjs/platform-fastify');
  nest = await NestFactory.create(module, new FastifyAdapter(), { logger: false });
} else {
  nest = await NestFactory.create(module, { logger: false });
}
await nest.listen(0, '127.0.0.1');
const { port } = nest.getHttpServer().address();

process.on('message', async (message) => {
  if (message !== 'stop') return;
  await nest.close();
  // A normal exit, so that --cpu-prof writes its profile.
  process.exit(0);
});
process.send({ port, prepare: built.prepare ?? [] });
