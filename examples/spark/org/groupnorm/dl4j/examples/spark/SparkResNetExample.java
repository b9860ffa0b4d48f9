package org.groupnorm.dl4j.examples.spark;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.deeplearning4j.spark.impl.graph.SparkComputationGraph;
import org.deeplearning4j.spark.impl.paramavg.ParameterAveragingTrainingMaster;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.Minibatches;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.ViewIterator;

/**
 * The small-batch ResNet with GroupNorm trained on Spark with parameter averaging, {@value #BATCH_PER_WORKER} images
 * per worker step: the driver to give {@code spark-submit} (README, "Spark"). Without a master set by spark-submit it
 * runs in local mode on 2 threads. Arguments: [epochs] [training images per class] [--approach auto|direct|export]
 * (how the minibatches reach the workers, see {@link TrainingApproach}; auto by default).
 *
 * <p>Built and run only with the {@code spark} profile.
 */
public class SparkResNetExample {

    private static final int BATCH_PER_WORKER = 2;
    private static final int AVERAGING_FREQUENCY = 4;
    private static final int TEST_PER_CLASS = 200;
    private static final long SEED = 42;

    public static void main(String[] args) {
        List<String> positional = new ArrayList<>();
        TrainingApproach approach = TrainingApproach.AUTO;
        for (int i = 0; i < args.length; i++) {
            if (args[i].equals("--approach") && i + 1 < args.length) {
                approach = TrainingApproach.parse(args[++i]);
            } else {
                positional.add(args[i]);
            }
        }
        int epochs = positional.size() > 0 ? Integer.parseInt(positional.get(0)) : 1;
        int perClass = positional.size() > 1 ? Integer.parseInt(positional.get(1)) : 100;

        SparkConf conf = new SparkConf().setAppName("groupnorm-resnet").setIfMissing("spark.master", "local[2]");
        if (conf.get("spark.master").startsWith("local")) {
            conf.set("spark.driver.host", "127.0.0.1").set("spark.driver.bindAddress", "127.0.0.1")
                    .set("spark.ui.enabled", "false");
        }
        JavaSparkContext sc = new JavaSparkContext(conf);
        try {
            // 1. Data: shuffled minibatches of 2 as an RDD (on a cluster, read them from shared storage instead).
            FashionMnist data = FashionMnist.locate(null);
            DataSet train = data.train(perClass);
            DataSet test = data.test(TEST_PER_CLASS);
            List<DataSet> minibatches = new ArrayList<>();
            new Minibatches(train, BATCH_PER_WORKER, SEED, 0).forEach(minibatches::add);
            JavaRDD<DataSet> rdd = sc.parallelize(minibatches);

            // 2. The network and the training master: workers average parameters every few steps.
            System.out.println(approach.describe(sc));
            ParameterAveragingTrainingMaster master = new ParameterAveragingTrainingMaster.Builder(BATCH_PER_WORKER)
                    .batchSizePerWorker(BATCH_PER_WORKER).averagingFrequency(AVERAGING_FREQUENCY)
                    .rddTrainingApproach(approach.resolve(sc)).workerPrefetchNumBatches(2).rngSeed(SEED).build();
            SparkComputationGraph net = new SparkComputationGraph(sc, new SmallResNet().norm(SmallResNet.Norm.GROUP)
                    .seed(SEED).learningRate(SmallResNet.learningRateFor(BATCH_PER_WORKER)).configuration(), master);

            // 3. Train, evaluate on the driver, clean up the exported minibatches.
            for (int epoch = 1; epoch <= epochs; epoch++) {
                long start = System.nanoTime();
                net.fit(rdd);
                double seconds = (System.nanoTime() - start) / 1e9;
                System.out.printf(Locale.ROOT, "epoch %d: loss %.4f, %.0f s, %.1f examples/s%n", epoch,
                        net.getScore(), seconds, minibatches.size() * BATCH_PER_WORKER / seconds);
            }
            double accuracy = net.getNetwork().evaluate(new ViewIterator(test, 500)).accuracy();
            System.out.printf(Locale.ROOT, "test error %.2f%% on %d images (master %s)%n", 100 * (1 - accuracy),
                    test.numExamples(), conf.get("spark.master"));
            master.deleteTempFiles(sc);
        } finally {
            sc.stop();
        }
    }
}
