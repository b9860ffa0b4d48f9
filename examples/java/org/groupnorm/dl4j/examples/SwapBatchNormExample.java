package org.groupnorm.dl4j.examples;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.zoo.model.ResNet50;
import org.groupnorm.dl4j.BatchNormToGroupNorm;
import org.groupnorm.dl4j.GroupNormalization;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Nesterovs;

/**
 * Takes DL4J's zoo ResNet50 (53 BatchNorm layers), swaps every BatchNorm for GroupNorm with weights kept, prints the
 * normalization layers before and after, and fine-tunes the result a few steps at batch size 2 (where BatchNorm's
 * batch statistics are unreliable and GroupNorm's are unaffected).
 */
public class SwapBatchNormExample {

    private static final int CLASSES = 10;
    private static final int BATCH_SIZE = 2;
    private static final int STEPS = 3;
    private static final long SEED = 42;

    public static void main(String[] args) {
        // 1. A BatchNorm network: the zoo's ResNet50 (built locally, no download).
        ComputationGraph resnet = ResNet50.builder().numClasses(CLASSES).seed(SEED)
                .updater(new Nesterovs(1e-3, 0.9)).build().init();

        // 2. Swap: 32 groups per layer (or the largest divisor <= 32), BatchNorm's gamma/beta as the start.
        BatchNormToGroupNorm.Report<ComputationGraph> report =
                BatchNormToGroupNorm.convertWithReport(resnet, new BatchNormToGroupNorm.Options());
        ComputationGraph converted = report.result();
        System.out.println(report);
        printNormalizationLayers("Before", resnet);
        printNormalizationLayers("After", converted);

        // 3. Fine-tune a few steps at batch size 2 (random images here: the point is that it trains).
        Nd4j.getRandom().setSeed(SEED);
        for (int step = 1; step <= STEPS; step++) {
            INDArray images = Nd4j.rand(DataType.FLOAT, BATCH_SIZE, 3, 224, 224);
            INDArray labels = Nd4j.eye(CLASSES).getRows(step % CLASSES, (step + 1) % CLASSES);
            long start = System.nanoTime();
            converted.fit(new INDArray[]{images}, new INDArray[]{labels});
            // DL4J's score includes the zoo ResNet50's L2 weight decay term, which dominates it here.
            double penalty = converted.calcRegularizationScore(true);
            System.out.printf("fine-tune step %d/%d: loss %.4f = cross-entropy %.4f + L2 penalty %.4f (%.1f s)%n",
                    step, STEPS, converted.score(), converted.score() - penalty, penalty,
                    (System.nanoTime() - start) / 1e9);
        }
    }

    /** Name, type, groups and parameter count of every normalization layer (the first and last few). */
    private static void printNormalizationLayers(String title, ComputationGraph net) {
        System.out.printf("%n%s:%n%-22s %-20s %7s %8s%n", title, "layer", "type", "groups", "params");
        int shown = 0;
        int total = 0;
        for (Layer layer : net.getLayers()) {
            org.deeplearning4j.nn.conf.layers.Layer conf = layer.conf().getLayer();
            boolean batchNorm = conf instanceof BatchNormalization;
            boolean groupNorm = conf instanceof GroupNormalization;
            if (!batchNorm && !groupNorm) {
                continue;
            }
            total++;
            if (shown++ < 6) {
                String groups = groupNorm ? String.valueOf(((GroupNormalization) conf).groupsFor(
                        ((GroupNormalization) conf).getNIn())) : "-";
                System.out.printf("%-22s %-20s %7s %8d%n", conf.getLayerName(), conf.getClass().getSimpleName(),
                        groups, layer.numParams());
            }
        }
        System.out.printf("... %d normalization layers in all; network parameters: %,d%n", total, net.numParams());
    }
}
