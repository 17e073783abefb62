// Export an image over NBD on a Unix socket, as qemu-nbd does; any NBD client (qemu-img,
// nbdcopy, nbdinfo, the kernel's nbd-client) can then use it. Stops after a moment here.
// Run: node dist/examples/serve-nbd.js [DIR]
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createImage, openImage, serveNbd } from 'qed-image';

const dir = process.argv[2] ?? tmpdir();
const path = join(dir, 'served.qed');
await createImage(path, { size: 1024 ** 3 });
const disk = await openImage(path);
const socket = join(dir, 'nbd.sock');
const server = await serveNbd({ listen: { kind: 'unix', path: socket }, exports: [{ name: 'disk', device: disk }] });
console.log(`serving: nbdinfo 'nbd+unix:///disk?socket=${socket}'`);
setTimeout(async () => {
  await server.stop();
  await disk.close();
  console.log('stopped');
}, 200);
