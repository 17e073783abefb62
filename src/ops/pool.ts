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

/** Like runPool, over items produced as the jobs go (an async iterable shared by the workers). */
export async function runPoolOver<T>(items: AsyncIterable<T> | Iterable<T>, inFlight: number, job: (item: T) => Promise<void>): Promise<void> {
  const iterator = Symbol.asyncIterator in items ? (items as AsyncIterable<T>)[Symbol.asyncIterator]() : toAsync((items as Iterable<T>)[Symbol.iterator]());
  let failure: unknown = null;
  let pulling: Promise<unknown> = Promise.resolve();
  /** One pull at a time: async generators queue calls anyway, this keeps the order explicit. */
  const nextItem = (): Promise<IteratorResult<T>> => {
    const result = pulling.then(() => iterator.next());
    pulling = result.catch(() => undefined);
    return result;
  };
  const worker = async (): Promise<void> => {
    while (failure === null) {
      let next: IteratorResult<T>;
      try { next = await nextItem(); } catch (err) { failure ??= err; return; }
      if (next.done) return;
      try { await job(next.value); } catch (err) { failure ??= err; }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, inFlight) }, worker));
  if (failure !== null) { await iterator.return?.(); throw failure; }
}

async function* toAsync<T>(iterator: Iterator<T>): AsyncGenerator<T> {
  for (let r = iterator.next(); !r.done; r = iterator.next()) yield r.value;
}
