// A writer that gets stuck halfway: it starts an atomic write of argv[2], writes 1 MiB into the temporary file, prints
// "ready <temporary path>" and waits forever. The test then interrupts or kills it.
import { liveTemps, writeFileAtomic } from '../dist/index.js';

const path = process.argv[2];
await writeFileAtomic(path, async (fh) => {
  await fh.write(Buffer.alloc(1 << 20, 0x61), 0, 1 << 20, 0);
  process.stdout.write(`ready ${liveTemps()[0]}\n`);
  await new Promise(() => setInterval(() => {}, 1000));
});
