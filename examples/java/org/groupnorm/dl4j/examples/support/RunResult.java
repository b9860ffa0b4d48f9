package org.groupnorm.dl4j.examples.support;

/**
 * One training run of the experiment: a normalization at a batch size, and what came out.
 *
 * @param norm            the normalization the network used
 * @param testError       fraction of test images misclassified (0..1)
 * @param finalTrainLoss  mean training loss over the last epoch
 * @param examplesPerSecond training throughput (examples seen / training seconds)
 */
public record RunResult(SmallResNet.Norm norm, int batchSize, double learningRate, int epochs, int trainExamples,
                        int testExamples, double testError, double finalTrainLoss, double trainSeconds,
                        double examplesPerSecond) {
}
