package org.groupnorm.dl4j.kernel;

import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.util.Locale;
import java.util.Random;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The kernel's Vector API loops alone, on one slab of 8x64x56x56 G=32 (2 channels x 56 x 56, in cache), one
 * thread, in the order given: HotSpot compiles a loop for the activations it has seen run, so a loop can be fast or
 * slow depending on which activations ran first. Each step is written {@code ACTIVATION} (normalize) or
 * {@code ACTIVATION_G} (the activation's gradient); each line prints nanoseconds per element of every step, per
 * round.
 *
 * <pre>
 * mvn -o -q -Djavacpp.platform=linux-x86_64 compile exec:java \
 *     -Dexec.mainClass=org.groupnorm.dl4j.kernel.LoopOrderBenchmark -Dbench.order=IDENTITY,SWISH,SWISH_G
 * </pre>
 */
public final class LoopOrderBenchmark {

    private static final int SLAB = 2 * 56 * 56;
    private static final int CALLS = 20_000;
    private static final int ROUNDS = 5;
    private static final float MEAN = 0.1f;
    private static final float SCALE = 1.1f;
    private static final float OFFSET = 0.2f;

    private LoopOrderBenchmark() {
    }

    public static void main(String[] args) {
        String[] order = System.getProperty("bench.order", "IDENTITY,SWISH,SWISH_G").split(",");
        System.out.println("Vector API loops, " + VectorLoops.describe() + "; ns per element, " + CALLS
                + " calls per step");
        run(new VectorLoops(), order);
    }

    private static void run(VectorLoops loops, String[] order) {
        Random random = new Random(1);
        INDArray x = Nd4j.createUninitialized(DataType.FLOAT, SLAB);
        INDArray dy = Nd4j.createUninitialized(DataType.FLOAT, SLAB);
        INDArray out = Nd4j.createUninitialized(DataType.FLOAT, SLAB);
        for (int i = 0; i < SLAB; i++) {
            x.putScalar(i, random.nextGaussian());
            dy.putScalar(i, random.nextGaussian());
        }
        ByteBuffer xs = loops.view(x);
        ByteBuffer dys = loops.view(dy);
        ByteBuffer outs = loops.view(out);
        for (int round = 0; round < ROUNDS; round++) {
            StringBuilder line = new StringBuilder();
            for (String step : order) {
                boolean gradient = step.endsWith("_G");
                FusedActivation activation = FusedActivation.of(
                        Activation.valueOf(gradient ? step.substring(0, step.length() - 2) : step)
                                .getActivationFunction());
                long start = System.nanoTime();
                for (int call = 0; call < CALLS; call++) {
                    if (gradient) {
                        loops.activationGradient(xs, dys, outs, 0, SLAB, MEAN, SCALE, OFFSET, activation);
                    } else {
                        loops.normalize(xs, outs, 0, SLAB, MEAN, SCALE, OFFSET, activation);
                    }
                }
                double nanosPerElement = (System.nanoTime() - start) / ((double) CALLS * SLAB);
                line.append(String.format(Locale.ROOT, "%s %.3f   ", step, nanosPerElement));
            }
            System.out.println(line.toString().trim());
        }
        // The views do not keep the arrays alive.
        Reference.reachabilityFence(x);
        Reference.reachabilityFence(dy);
        Reference.reachabilityFence(out);
    }
}
