package org.groupnorm.dl4j.kernel;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinTask;
import java.util.function.IntConsumer;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Runs independent work units on as many threads as ND4J itself is allowed to use (OMP_NUM_THREADS or
 * {@code Nd4j.getEnvironment().setMaxMasterThreads}), so the kernel never oversubscribes the cores ND4J's own ops use.
 * ND4J's ops are not running while the kernel runs (the layer calls it synchronously), so the two never compete.
 */
final class Parallel {

    /** Below this many elements per call the hand-off to other threads costs more than it saves. */
    private static final long MIN_ELEMENTS_TO_SPLIT = 32_768;

    private static final ForkJoinPool POOL = new ForkJoinPool(Runtime.getRuntime().availableProcessors(),
            pool -> {
                var thread = ForkJoinPool.defaultForkJoinWorkerThreadFactory.newThread(pool);
                thread.setDaemon(true);
                thread.setName("groupnorm-kernel-" + thread.getPoolIndex());
                return thread;
            }, null, false);

    private Parallel() {
    }

    /** How many threads the kernel may use. */
    static int threads() {
        return Math.min(Nd4j.getEnvironment().maxMasterThreads(), Runtime.getRuntime().availableProcessors());
    }

    /** Calls {@code body} for every unit in [0, units); units must touch disjoint data. */
    static void forEach(int units, long totalElements, IntConsumer body) {
        int threads = Math.min(units, threads());
        if (threads <= 1 || totalElements < MIN_ELEMENTS_TO_SPLIT) {
            for (int unit = 0; unit < units; unit++) {
                body.accept(unit);
            }
            return;
        }
        ForkJoinTask<?>[] tasks = new ForkJoinTask<?>[threads - 1];
        for (int t = 1; t < threads; t++) {
            int from = (int) ((long) units * t / threads);
            int to = (int) ((long) units * (t + 1) / threads);
            tasks[t - 1] = POOL.submit(() -> {
                for (int unit = from; unit < to; unit++) {
                    body.accept(unit);
                }
            });
        }
        int firstEnd = units / threads;
        for (int unit = 0; unit < firstEnd; unit++) {
            body.accept(unit);
        }
        for (ForkJoinTask<?> task : tasks) {
            task.join();
        }
    }
}
