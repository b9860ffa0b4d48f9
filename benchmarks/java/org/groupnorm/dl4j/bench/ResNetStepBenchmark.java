package org.groupnorm.dl4j.bench;

import java.util.Arrays;
import java.util.Locale;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Time of one training step of the small-batch ResNet example's network with BatchNorm, with GroupNorm and with no
 * normalization at all (same network otherwise), per batch size. The difference to the no-norm network is what the
 * normalization layers cost; its share of the step is printed.
 *
 * <pre>OMP_NUM_THREADS=2 mvn -q compile exec:java -Dexec.mainClass=org.groupnorm.dl4j.bench.ResNetStepBenchmark</pre>
 * Options: {@code -Dbench.batchSizes=2,4,16,32}, {@code -Dbench.steps=40} (timed steps; as many again warm up).
 */
public class ResNetStepBenchmark {

    public static void main(String[] args) {
        int[] batchSizes = Arrays.stream(System.getProperty("bench.batchSizes", "2,4,16,32").split(","))
                .mapToInt(Integer::parseInt).toArray();
        int steps = Integer.getInteger("bench.steps", 40);
        System.out.printf("threads (ND4J/OMP): %d; median ms per training step over %d steps after %d warm-up%n",
                Nd4j.getEnvironment().maxMasterThreads(), steps, steps);
        System.out.printf(Locale.ROOT, "%-6s %10s %10s %10s %12s %12s%n", "batch", "BN ms", "GN ms", "none ms",
                "BN share", "GN share");
        for (int batch : batchSizes) {
            double bn = stepMillis(SmallResNet.Norm.BATCH, batch, steps);
            double gn = stepMillis(SmallResNet.Norm.GROUP, batch, steps);
            double none = stepMillis(SmallResNet.Norm.NONE, batch, steps);
            System.out.printf(Locale.ROOT, "%-6d %10.2f %10.2f %10.2f %11.0f%% %11.0f%%%n", batch, bn, gn, none,
                    100 * (bn - none) / bn, 100 * (gn - none) / gn);
        }
    }

    private static double stepMillis(SmallResNet.Norm norm, int batch, int steps) {
        ComputationGraph net = new SmallResNet().norm(norm).learningRate(0.01).build();
        Nd4j.getRandom().setSeed(1);
        INDArray x = Nd4j.rand(DataType.FLOAT, batch, 1, 28, 28);
        INDArray y = Nd4j.zeros(DataType.FLOAT, batch, 10);
        for (int i = 0; i < batch; i++) {
            y.putScalar(i, i % 10, 1);
        }
        DataSet data = new DataSet(x, y);
        for (int i = 0; i < steps; i++) {
            net.fit(data);
        }
        double[] ms = new double[steps];
        for (int i = 0; i < steps; i++) {
            long start = System.nanoTime();
            net.fit(data);
            ms[i] = (System.nanoTime() - start) / 1e6;
        }
        Arrays.sort(ms);
        return ms[steps / 2];
    }
}
