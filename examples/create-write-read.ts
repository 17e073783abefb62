// Create an image, write to it, read it back. `await using` closes the image at the end of
// the block, flushing what was written. Run: node dist/examples/create-write-read.js [DIR]
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createImage, openImage } from 'qed-image';

const dir = process.argv[2] ?? tmpdir();
const path = join(dir, 'example.qed');

await createImage(path, { size: 1024 ** 3 }); // 1 GiB, sparse: the file starts at a few hundred KiB
{
  await using disk = await openImage(path);
  await disk.write(Buffer.from('hello, qed'), 4096);
  await disk.flush(); // durable from here on
}

await using disk = await openImage(path, { readOnly: true });
const back = Buffer.alloc(10);
await disk.read(back, 4096);
console.log(`read back: ${back.toString()}`);
console.log(disk.describe());
