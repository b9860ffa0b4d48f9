package org.groupnorm.dl4j.bench;

import java.util.Arrays;
import java.util.Locale;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Time of one training step of the small-batch ResNet example's network with BatchNorm, with GroupNorm, with GroupNorm
 * after weight-standardized convolutions (GN+WS) and with no normalization at all (same network otherwise), per batch
 * size. The difference to the no-norm network is what the normalization layers cost, the difference between GN+WS and
 * GN what Weight Standardization costs; their shares of the step are printed.
 *
 * <pre>OMP_NUM_THREADS=2 mvn -q compile exec:java -Dexec.mainClass=org.groupnorm.dl4j.bench.ResNetStepBenchmark</pre>
 * Options: {@code -Dbench.batchSizes=2,4,16,32}, {@code -Dbench.steps=40} (timed steps; as many again warm up).
 */
public class ResNetStepBenchmark {

    private static final SmallResNet.Norm[] NORMS = {SmallResNet.Norm.BATCH, SmallResNet.Norm.GROUP,
            SmallResNet.Norm.GROUP_WS, SmallResNet.Norm.NONE};

    public static void main(String[] args) {
        int[] batchSizes = Arrays.stream(System.getProperty("bench.batchSizes", "2,4,16,32").split(","))
                .mapToInt(Integer::parseInt).toArray();
        int steps = Integer.getInteger("bench.steps", 40);
        System.out.printf("threads (ND4J/OMP): %d; CPU kernel loops: %s; median ms per training step over %d steps "
                + "after %d warm-up, the networks' steps interleaved%n", Nd4j.getEnvironment().maxMasterThreads(),
                GroupNormKernel.usesVectorApi() ? "Vector API" : "plain Java", steps, steps);
        System.out.printf(Locale.ROOT, "%-6s %10s %10s %10s %10s %12s %12s %14s%n", "batch", "BN ms", "GN ms",
                "GNWS ms", "none ms", "BN share", "GN share", "WS share/GNWS");
        for (int batch : batchSizes) {
            double[] ms = stepMillis(batch, steps);
            double bn = ms[0];
            double gn = ms[1];
            double gnws = ms[2];
            double none = ms[3];
            System.out.printf(Locale.ROOT, "%-6d %10.2f %10.2f %10.2f %10.2f %11.0f%% %11.0f%% %13.1f%%%n", batch, bn,
                    gn, gnws, none, 100 * (bn - none) / bn, 100 * (gn - none) / gn, 100 * (gnws - gn) / gnws);
        }
    }

    /**
     * Median step time of each network in {@link #NORMS} order. The networks take turns step by step, so a change in
     * this shared machine's speed affects all alike instead of whichever ran during it.
     */
    private static double[] stepMillis(int batch, int steps) {
        ComputationGraph[] nets = new ComputationGraph[NORMS.length];
        for (int k = 0; k < NORMS.length; k++) {
            nets[k] = new SmallResNet().norm(NORMS[k]).learningRate(0.01).build();
        }
        Nd4j.getRandom().setSeed(1);
        INDArray x = Nd4j.rand(DataType.FLOAT, batch, 1, 28, 28);
        INDArray y = Nd4j.zeros(DataType.FLOAT, batch, 10);
        for (int i = 0; i < batch; i++) {
            y.putScalar(i, i % 10, 1);
        }
        DataSet data = new DataSet(x, y);
        for (int i = 0; i < steps; i++) {
            for (ComputationGraph net : nets) {
                net.fit(data);
            }
        }
        double[][] ms = new double[NORMS.length][steps];
        for (int i = 0; i < steps; i++) {
            for (int k = 0; k < nets.length; k++) {
                long start = System.nanoTime();
                nets[k].fit(data);
                ms[k][i] = (System.nanoTime() - start) / 1e6;
            }
        }
        double[] medians = new double[NORMS.length];
        for (int k = 0; k < NORMS.length; k++) {
            Arrays.sort(ms[k]);
            medians[k] = ms[k][steps / 2];
        }
        return medians;
    }
}
