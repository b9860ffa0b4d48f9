package org.groupnorm.dl4j.spark;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.nd4j.linalg.indexing.NDArrayIndex.all;
import static org.nd4j.linalg.indexing.NDArrayIndex.interval;
import static org.nd4j.linalg.indexing.NDArrayIndex.point;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.spark.impl.graph.SparkComputationGraph;
import org.deeplearning4j.spark.impl.multilayer.SparkDl4jMultiLayer;
import org.deeplearning4j.spark.impl.paramavg.ParameterAveragingTrainingMaster;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions;

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
        SparkDl4jMultiLayer net = new SparkDl4jMultiLayer(spark, mlnConfiguration(), master);
        DataSet heldOut = sample(64, 1000);
        double before = net.getNetwork().score(heldOut);
        JavaRDD<DataSet> train = trainingData();
        for (int epoch = 0; epoch < 3; epoch++) {
            net.fit(train);
        }
        double after = net.getNetwork().score(heldOut);
        assertTrue(after < 0.7 * before, "held-out loss " + before + " -> " + after);
        assertTrue(net.getNetwork().getLayer(1) instanceof GroupNormalizationLayer);
        assertTrue(filesIn(exportFolder).size() > 0, "the minibatches were exported under " + exportFolder);
        assertTrue(master.deleteTempFiles(spark));
        assertTrue(filesIn(exportFolder).isEmpty(), "left behind: " + filesIn(exportFolder));
    }

    @Test
    void computationGraphTrainsWithParameterAveraging() throws IOException {
        ParameterAveragingTrainingMaster master = trainingMaster();
        SparkComputationGraph net = new SparkComputationGraph(spark, graphConfiguration(), master);
        DataSet heldOut = sample(64, 1000);
        double before = net.getNetwork().score(heldOut);
        JavaRDD<DataSet> train = trainingData();
        for (int epoch = 0; epoch < 3; epoch++) {
            net.fit(train);
        }
        double after = net.getNetwork().score(heldOut);
        assertTrue(after < 0.7 * before, "held-out loss " + before + " -> " + after);
        assertTrue(net.getNetwork().getLayer("gn") instanceof GroupNormalizationLayer);
        assertTrue(filesIn(exportFolder).size() > 0, "the minibatches were exported under " + exportFolder);
        assertTrue(master.deleteTempFiles(spark));
        assertTrue(filesIn(exportFolder).isEmpty(), "left behind: " + filesIn(exportFolder));
    }

    @Test
    void failingWorkerSurfacesFromFit() {
        ParameterAveragingTrainingMaster master = trainingMaster();
        SparkDl4jMultiLayer net = new SparkDl4jMultiLayer(spark, mlnConfiguration(), master);
        List<DataSet> batches = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            batches.add(i == 5 ? new DataSet(Nd4j.rand(DataType.FLOAT, BATCH_PER_WORKER, 3, 12, 12),
                    sample(BATCH_PER_WORKER, i).getLabels()) : sample(BATCH_PER_WORKER, i));
        }
        JavaRDD<DataSet> bad = spark.parallelize(batches, 2);
        Exception e = assertTimeoutPreemptively(Duration.ofMinutes(2),
                () -> assertThrows(Exception.class, () -> net.fit(bad)));
        assertTrue(String.valueOf(e.getMessage()).contains("channels") || causes(e).contains("channels")
                || causes(e).contains("depth"), causes(e));
        master.deleteTempFiles(spark);
    }

    private static List<Path> filesIn(Path folder) throws IOException {
        try (Stream<Path> files = Files.walk(folder)) {
            return files.filter(Files::isRegularFile).collect(Collectors.toList());
        }
    }

    private static String causes(Throwable e) {
        StringBuilder text = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            text.append(t.getMessage()).append(" | ");
        }
        return text.toString();
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

    /** Minibatches of 2 from a learnable task (which quadrant of a 12x12 image holds a bright blob). */
    private static JavaRDD<DataSet> trainingData() {
        Nd4j.getRandom().setSeed(12);
        List<DataSet> batches = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            batches.add(sample(BATCH_PER_WORKER, i));
        }
        return spark.parallelize(batches, 2);
    }

    private static DataSet sample(int count, int offset) {
        INDArray x = Nd4j.rand(DataType.FLOAT, count, 1, 12, 12).muli(0.3);
        INDArray y = Nd4j.zeros(DataType.FLOAT, count, 4);
        for (int i = 0; i < count; i++) {
            int quadrant = (i + offset) % 4;
            int row = quadrant / 2 * 6;
            int col = quadrant % 2 * 6;
            x.get(point(i), all(), interval(row + 1, row + 5), interval(col + 1, col + 5)).addi(1.0);
            y.putScalar(i, quadrant, 1);
        }
        return new DataSet(x, y);
    }

    private static MultiLayerConfiguration mlnConfiguration() {
        return new NeuralNetConfiguration.Builder().seed(5).updater(new Adam(5e-3)).list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.IDENTITY).build())
                .layer(new GroupNormalization.Builder().groups(4).build())
                .layer(new ActivationLayer(Activation.RELU))
                .layer(new GlobalPoolingLayer(PoolingType.MAX))
                .layer(new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(4)
                        .activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(12, 12, 1))
                .build();
    }

    private static ComputationGraphConfiguration graphConfiguration() {
        return new NeuralNetConfiguration.Builder().seed(5).updater(new Adam(5e-3)).graphBuilder()
                .addInputs("in")
                .setInputTypes(InputType.convolutional(12, 12, 1))
                .addLayer("conv", new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.IDENTITY)
                        .build(), "in")
                .addLayer("gn", new GroupNormalization.Builder().groups(4).build(), "conv")
                .addLayer("relu", new ActivationLayer(Activation.RELU), "gn")
                .addLayer("pool", new GlobalPoolingLayer(PoolingType.MAX), "relu")
                .addLayer("out", new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(4)
                        .activation(Activation.SOFTMAX).build(), "pool")
                .setOutputs("out")
                .build();
    }
}
