// Run jobs with a bounded number in flight; the first failure stops new jobs and is thrown.

export async function runPool(count: number, inFlight: number, job: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const worker = async (): Promise<void> => {
    while (failure === null && next < count) {
      const index = next++;
      try { await job(index); } catch (err) { failure ??= err; }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, worker));
  if (failure !== null) throw failure;
}
