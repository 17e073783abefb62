// Check an image as `qemu-img check` does, and repair it if needed; the exit code follows
// qemu-img's (0 clean, 1 check failed, 2 corruptions, 3 leaks only).
// Run: node dist/examples/check-and-repair.js [DIR]
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { check, createImage, FormatError, openImage } from 'qed-image';

const dir = process.argv[2] ?? tmpdir();
const path = join(dir, 'checked.qed');
await createImage(path, { size: 128 * 1024 ** 2 });
{
  await using disk = await openImage(path);
  await disk.write(Buffer.alloc(1024 ** 2, 7), 0);
}

try {
  const report = await check(path);
  console.log(`${report.allocatedClusters}/${report.totalClusters} clusters allocated, exit code ${report.exitCode}`);
  if (report.exitCode === 2 || report.exitCode === 3) {
    const repaired = await check(path, { repair: 'all' });
    console.log(`repaired: ${repaired.corruptionsFixed} corruptions, ${repaired.leaksFixed} leaks`);
  }
} catch (err) {
  if (err instanceof FormatError) console.error(`not a usable QED image: ${err.message} (${err.path})`);
  throw err;
}
