package org.groupnorm.dl4j.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.spark.api.RDDTrainingApproach;
import org.deeplearning4j.spark.api.Repartition;
import org.deeplearning4j.spark.impl.graph.SparkComputationGraph;
import org.deeplearning4j.spark.impl.multilayer.SparkDl4jMultiLayer;
import org.deeplearning4j.spark.impl.paramavg.ParameterAveragingTrainingMaster;
import org.groupnorm.dl4j.QuadrantTask;
import org.groupnorm.dl4j.examples.spark.TrainingApproach;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;

/**
 * GroupNorm training on a real Spark cluster: a standalone master and two one-core workers on 127.0.0.1 (started by
 * {@code scripts/spark-cluster.sh}), executors in their own JVMs, this JVM the driver. Parameter averaging with the
 * Direct approach (the one that works without a shared file system, which {@link TrainingApproach#AUTO} picks here):
 * networks train, one averaging round equals the average of the workers trained alone, and a worker killed mid-job
 * ends the job (failed or recovered) within bounded time, with no process left behind.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class SparkClusterTest {

    private static final int BATCH_PER_WORKER = 2;
    private static final String JDK17_FLAGS = "--add-opens=java.base/java.nio=ALL-UNNAMED "
            + "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED "
            + "--add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED";

    private static LocalSparkCluster cluster;
    private static JavaSparkContext spark;
    /** Every executor JVM seen, to check at the end that none outlived the cluster. */
    private static final List<ProcessHandle> executors = new ArrayList<>();

    @BeforeAll
    static void startCluster() throws Exception {
        cluster = LocalSparkCluster.start(Path.of("target", "spark-cluster-test"));
        try {
            // The executors get this JVM's classpath (DL4J, the layer, the tests' classes): the same machine.
            spark = new JavaSparkContext(new SparkConf().setMaster(cluster.masterUrl())
                    .setAppName("groupnorm-cluster-test")
                    .set("spark.driver.host", "127.0.0.1").set("spark.driver.bindAddress", "127.0.0.1")
                    .set("spark.ui.enabled", "false").set("spark.executor.memory", "1g")
                    .set("spark.executor.extraClassPath", System.getProperty("java.class.path"))
                    .set("spark.executor.extraJavaOptions", JDK17_FLAGS)
                    .set("spark.task.maxFailures", "2"));
        } catch (RuntimeException e) {
            cluster.close();
            throw e;
        }
    }

    @AfterAll
    static void stopCluster() throws Exception {
        try {
            if (spark != null) {
                spark.stop();
            }
        } finally {
            cluster.close();
        }
        for (ProcessHandle executor : executors) {
            executor.onExit().get(30, TimeUnit.SECONDS);
        }
    }

    @Test
    @Order(1)
    void autoChoosesDirectOnAClusterWithoutASharedFileSystem() {
        assertEquals(RDDTrainingApproach.Direct, TrainingApproach.AUTO.resolve(spark));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TrainingApproach.EXPORT.resolve(spark));
        assertTrue(e.getMessage().contains("use --approach direct"), e.getMessage());
        assertEquals(TrainingApproach.EXPORT, TrainingApproach.parse(" Export"));
        e = assertThrows(IllegalArgumentException.class, () -> TrainingApproach.parse("hdfs"));
        assertEquals("--approach hdfs: expected auto, direct or export", e.getMessage());
    }

    @Test
    @Order(2)
    void multiLayerNetworkAndComputationGraphTrainOnTwoWorkers() throws Exception {
        DataSet heldOut = QuadrantTask.sample(64, 1000);
        JavaRDD<DataSet> train = spark.parallelize(QuadrantTask.minibatches(64, BATCH_PER_WORKER), 2);

        SparkDl4jMultiLayer mln = new SparkDl4jMultiLayer(spark, QuadrantTask.multiLayerConfiguration(),
                trainingMaster(4));
        double before = mln.getNetwork().score(heldOut);
        for (int epoch = 0; epoch < 3; epoch++) {
            mln.fit(train);
        }
        double after = mln.getNetwork().score(heldOut);
        assertTrue(after < 0.7 * before, "MultiLayerNetwork held-out loss " + before + " -> " + after);
        assertTrue(mln.getNetwork().getLayer(1) instanceof GroupNormalizationLayer);

        SparkComputationGraph graph = new SparkComputationGraph(spark, QuadrantTask.graphConfiguration(),
                trainingMaster(4));
        before = graph.getNetwork().score(heldOut);
        for (int epoch = 0; epoch < 3; epoch++) {
            graph.fit(train);
        }
        after = graph.getNetwork().score(heldOut);
        assertTrue(after < 0.7 * before, "ComputationGraph held-out loss " + before + " -> " + after);
        assertTrue(graph.getNetwork().getLayer("gn") instanceof GroupNormalizationLayer);
        assertEquals(2, spark.sc().getExecutorMemoryStatus().size() - 1, "two executors besides the driver");
        recordExecutors();
    }

    /**
     * What parameter averaging promises: each worker trains its partition from the same parameters, then the
     * parameters are averaged. One round here (averaging frequency = each worker's number of minibatches).
     */
    @Test
    @Order(3)
    void oneAveragingRoundEqualsTheAverageOfEachWorkerTrainedAlone() throws Exception {
        int steps = 6;
        List<DataSet> batches = QuadrantTask.minibatches(2 * steps, BATCH_PER_WORKER);
        SparkDl4jMultiLayer mln = new SparkDl4jMultiLayer(spark, QuadrantTask.multiLayerConfiguration(),
                trainingMaster(steps));
        MultiLayerNetwork initial = mln.getNetwork().clone();
        mln.fit(spark.parallelize(batches, 2));   // partition k holds batches [k * steps, (k + 1) * steps)

        INDArray expected = initial.params().mul(0);
        for (int worker = 0; worker < 2; worker++) {
            MultiLayerNetwork alone = initial.clone();
            for (DataSet batch : batches.subList(worker * steps, (worker + 1) * steps)) {
                alone.fit(batch);
            }
            expected.addi(alone.params());
        }
        expected.divi(2);
        INDArray actual = mln.getNetwork().params();
        double difference = expected.sub(actual).amaxNumber().doubleValue();
        double moved = expected.sub(initial.params()).amaxNumber().doubleValue();
        assertTrue(moved > 1e-3, "training moved the parameters by " + moved);
        assertTrue(difference < 1e-5, "averaged parameters differ from the workers' average by " + difference);
    }

    /**
     * A worker machine going away mid-job (SIGKILL of the worker daemon): the job fails with an error or recovers on
     * the other worker, within bounded time; the killed worker's executor exits with it.
     */
    @Test
    @Order(4)
    void aWorkerKilledMidJobEndsTheJobWithinBoundedTime() throws Exception {
        recordExecutors();
        ProcessHandle worker = ProcessHandle.of(cluster.pid("worker-2")).orElseThrow();
        List<ProcessHandle> itsExecutors = worker.children().toList();
        assertEquals(1, itsExecutors.size(), "worker-2 runs one executor");

        SparkDl4jMultiLayer mln = new SparkDl4jMultiLayer(spark, QuadrantTask.multiLayerConfiguration(),
                trainingMaster(4));
        JavaRDD<DataSet> data = spark.parallelize(QuadrantTask.minibatches(800, BATCH_PER_WORKER), 2);
        ExecutorService driver = Executors.newSingleThreadExecutor();
        try {
            Future<?> job = driver.submit(() -> mln.fit(data));
            Thread.sleep(3000);   // the job is running on both executors
            worker.destroyForcibly();
            long killed = System.nanoTime();
            try {
                job.get(150, TimeUnit.SECONDS);
                System.out.printf("worker killed: the job recovered on the remaining worker, %.0f s later%n",
                        (System.nanoTime() - killed) / 1e9);
            } catch (ExecutionException failed) {
                assertTrue(failed.getCause().getMessage() != null, "a failure says why: " + failed.getCause());
                System.out.printf("worker killed: the job failed %.0f s later: %s%n",
                        (System.nanoTime() - killed) / 1e9, failed.getCause());
            } catch (TimeoutException hung) {
                job.cancel(true);
                fail("the job neither finished nor failed within 150 s of losing a worker");
            }
        } finally {
            driver.shutdownNow();
        }
        for (ProcessHandle executor : itsExecutors) {
            try {
                executor.onExit().get(60, TimeUnit.SECONDS);
            } catch (TimeoutException e) {
                executor.destroyForcibly();
                fail("the killed worker's executor (PID " + executor.pid() + ") outlived it by 60 s");
            }
        }
    }

    private static void recordExecutors() throws Exception {
        for (String worker : new String[]{"worker-1", "worker-2"}) {
            ProcessHandle.of(cluster.pid(worker)).ifPresent(w -> w.children().forEach(executors::add));
        }
    }

    private static ParameterAveragingTrainingMaster trainingMaster(int averagingFrequency) {
        return new ParameterAveragingTrainingMaster.Builder(BATCH_PER_WORKER)
                .batchSizePerWorker(BATCH_PER_WORKER)
                .averagingFrequency(averagingFrequency)
                .rddTrainingApproach(TrainingApproach.AUTO.resolve(spark))
                .repartionData(Repartition.Never)
                .workerPrefetchNumBatches(0)
                .rngSeed(7)
                .build();
    }
}
