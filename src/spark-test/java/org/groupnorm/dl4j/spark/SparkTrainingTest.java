package org.groupnorm.dl4j.spark;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.function.DoubleSupplier;
import java.util.function.Supplier;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.spark.impl.graph.SparkComputationGraph;
import org.deeplearning4j.spark.impl.multilayer.SparkDl4jMultiLayer;
import org.deeplearning4j.spark.impl.paramavg.ParameterAveragingTrainingMaster;
import org.groupnorm.dl4j.QuadrantTask;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.dataset.DataSet;

/**
 * GroupNorm networks on Spark in local mode (2 executor threads, everything on 127.0.0.1): the configuration goes to
 * the workers as JSON, the parameters are averaged, the layer survives both, the loss falls, a failing worker
 * surfaces as an exception, and the training master's exported minibatch files are removed by
 * {@code deleteTempFiles}. Runs with {@code -Pspark}.
 */
class SparkTrainingTest {

    private static final int BATCH_PER_WORKER = 2;
    private static JavaSparkContext spark;

    @TempDir
    Path exportFolder;

    @BeforeAll
    static void startSpark() {
        spark = new JavaSparkContext(new SparkConf().setMaster("local[2]").setAppName("groupnorm-spark-test")
                .set("spark.driver.host", "127.0.0.1").set("spark.driver.bindAddress", "127.0.0.1")
                .set("spark.ui.enabled", "false"));
    }

    @AfterAll
    static void stopSpark() {
        spark.stop();
    }

    @Test
    void multiLayerNetworkTrainsWithParameterAveraging() throws IOException {
        ParameterAveragingTrainingMaster master = trainingMaster();
        SparkDl4jMultiLayer net = new SparkDl4jMultiLayer(spark, QuadrantTask.multiLayerConfiguration(), master);
        DataSet heldOut = QuadrantTask.sample(64, 1000);
        JavaRDD<DataSet> train = trainingData();
        trainsAndCleansUp(master, () -> net.getNetwork().score(heldOut), () -> net.fit(train),
                () -> net.getNetwork().getLayer(1));
    }

    @Test
    void computationGraphTrainsWithParameterAveraging() throws IOException {
        ParameterAveragingTrainingMaster master = trainingMaster();
        SparkComputationGraph net = new SparkComputationGraph(spark, QuadrantTask.graphConfiguration(), master);
        DataSet heldOut = QuadrantTask.sample(64, 1000);
        JavaRDD<DataSet> train = trainingData();
        trainsAndCleansUp(master, () -> net.getNetwork().score(heldOut), () -> net.fit(train),
                () -> net.getNetwork().getLayer("gn"));
    }

    @Test
    void failingWorkerSurfacesFromFit() {
        ParameterAveragingTrainingMaster master = trainingMaster();
        SparkDl4jMultiLayer net = new SparkDl4jMultiLayer(spark, QuadrantTask.multiLayerConfiguration(), master);
        List<DataSet> batches = QuadrantTask.minibatches(8, BATCH_PER_WORKER);
        batches.set(5, QuadrantTask.malformed(BATCH_PER_WORKER));
        JavaRDD<DataSet> bad = spark.parallelize(batches, 2);
        Exception e = assertTimeoutPreemptively(Duration.ofMinutes(2),
                () -> assertThrows(Exception.class, () -> net.fit(bad)));
        assertTrue(QuadrantTask.messages(e).contains("input channels"), QuadrantTask.messages(e));
        master.deleteTempFiles(spark);
    }

    /**
     * Three epochs of {@code fitEpoch}: held-out loss must fall, the GroupNorm layer must still be one, and
     * deleteTempFiles must remove the minibatches the training master exported.
     */
    private void trainsAndCleansUp(ParameterAveragingTrainingMaster master, DoubleSupplier heldOutLoss,
                                   Runnable fitEpoch, Supplier<Layer> groupNormLayer)
            throws IOException {
        double before = heldOutLoss.getAsDouble();
        for (int epoch = 0; epoch < 3; epoch++) {
            fitEpoch.run();
        }
        double after = heldOutLoss.getAsDouble();
        assertTrue(after < 0.7 * before, "held-out loss " + before + " -> " + after);
        assertTrue(groupNormLayer.get() instanceof GroupNormalizationLayer);
        assertTrue(filesIn(exportFolder).size() > 0, "the minibatches were exported under " + exportFolder);
        assertTrue(master.deleteTempFiles(spark));
        assertTrue(filesIn(exportFolder).isEmpty(), "left behind: " + filesIn(exportFolder));
    }

    /** Parameter averaging with the exported minibatches under this test's own temporary folder. */
    private ParameterAveragingTrainingMaster trainingMaster() {
        return new ParameterAveragingTrainingMaster.Builder(BATCH_PER_WORKER)
                .exportDirectory(exportFolder.toUri().toString())
                .batchSizePerWorker(BATCH_PER_WORKER)
                .averagingFrequency(4)
                .workerPrefetchNumBatches(0)
                .rngSeed(7)
                .build();
    }

    private static JavaRDD<DataSet> trainingData() {
        return spark.parallelize(QuadrantTask.minibatches(64, BATCH_PER_WORKER), 2);
    }

    private static List<Path> filesIn(Path folder) throws IOException {
        try (Stream<Path> files = Files.walk(folder)) {
            return files.filter(Files::isRegularFile).collect(Collectors.toList());
        }
    }
}
