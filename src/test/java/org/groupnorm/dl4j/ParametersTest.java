package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.memory.LayerMemoryReport;
import org.deeplearning4j.nn.conf.memory.MemoryType;
import org.deeplearning4j.nn.conf.memory.MemoryUseMode;
import org.deeplearning4j.nn.conf.CacheMode;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.learning.regularization.Regularization;

/** gamma/beta behave like any DL4J layer's parameters: set, read, initialized, regularized only on request. */
class ParametersTest {

    @Test
    void setParamCopiesValuesIntoTheLayer() {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(4).groups(2).build(),
                DataType.DOUBLE, Engine.AUTO);
        INDArray x = Nd4j.randn(DataType.DOUBLE, 2, 4, 3, 3);
        INDArray before = gn.forward(x).dup();
        gn.layer.setParam("gamma", Nd4j.createFromArray(2.0, 2.0, 2.0, 2.0));
        gn.layer.setParam("beta", Nd4j.createFromArray(1.0, 1.0, 1.0, 1.0));
        assertEquals(Nd4j.createFromArray(2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0), gn.layer.params().reshape(8));
        assertEquals(before.mul(2).add(1), gn.forward(x));
    }

    @Test
    void setParamsAndParamTableShareTheFlatView() {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(3).groups(3).build(),
                DataType.FLOAT, Engine.AUTO);
        gn.layer.setParams(Nd4j.createFromArray(new float[]{1, 2, 3, 4, 5, 6}).reshape(1, 6));
        assertEquals(Nd4j.createFromArray(new float[]{1, 2, 3}), gn.layer.getParam("gamma"));
        assertEquals(Nd4j.createFromArray(new float[]{4, 5, 6}), gn.layer.paramTable().get("beta"));
    }

    @Test
    void initialValuesComeFromTheConfiguration() {
        GroupNormHarness gn = new GroupNormHarness(new GroupNormalization.Builder().nIn(4).groups(2)
                .gammaInit(0.5).betaInit(-1).build(), DataType.FLOAT, Engine.AUTO);
        assertEquals(Nd4j.valueArrayOf(new long[]{4}, 0.5f), gn.layer.getParam("gamma"));
        assertEquals(Nd4j.valueArrayOf(new long[]{4}, -1f), gn.layer.getParam("beta"));
        GroupNormHarness plain = new GroupNormHarness(new GroupNormalization.Builder().nIn(4).groups(2)
                .affine(false).build(), DataType.FLOAT, Engine.AUTO);
        assertEquals(0, plain.layer.numParams());
    }

    @Test
    void regularizationReachesGammaAndBetaOnlyWhenAskedFor() {
        MultiLayerNetwork byDefault = TestNetworks.forLayout(TensorLayout.FF,
                new GroupNormalization.Builder().groups(2), new Adam(), DataType.FLOAT).net();
        GroupNormalization plain = (GroupNormalization) byDefault.getLayer(1).conf().getLayer();
        assertNull(plain.getRegularizationByParam("gamma"));
        assertNull(plain.getRegularizationByParam("beta"));

        MultiLayerNetwork optedIn = TestNetworks.forLayout(TensorLayout.FF, new GroupNormalization.Builder()
                .groups(2).regularizeGammaBeta(true).l2(1e-3).l2Bias(1e-4), new Adam(), DataType.FLOAT).net();
        GroupNormalization regularized = (GroupNormalization) optedIn.getLayer(1).conf().getLayer();
        List<Regularization> gamma = regularized.getRegularizationByParam("gamma");
        List<Regularization> beta = regularized.getRegularizationByParam("beta");
        assertEquals(1, gamma.size());
        assertEquals(1, beta.size());
        assertNotEquals(gamma, beta);
        assertTrue(optedIn.calcRegularizationScore(true) > 0);
    }

    @Test
    void memoryReportCountsParametersUpdaterStateAndWorkingMemory() {
        GroupNormalization gn = new GroupNormalization.Builder().nIn(64).groups(32).updater(new Adam())
                .dataFormat(TensorLayout.NCHW).build();
        LayerMemoryReport report = gn.getMemoryReport(InputType.convolutional(56, 56, 64));
        assertEquals(128, report.getParameterSize());
        assertEquals(256, report.getUpdaterStateSize());   // Adam: two values per parameter
        long tensor = 64L * 56 * 56;   // elements per example
        assertEquals(2 * 64 * 4, report.getMemoryBytes(MemoryType.WORKING_MEMORY_FIXED, 8, MemoryUseMode.TRAINING,
                CacheMode.NONE, DataType.FLOAT), "gamma and beta gradients");
        assertEquals(8 * (2 * 32 + 3 * tensor) * 4, report.getMemoryBytes(MemoryType.WORKING_MEMORY_VARIABLE, 8,
                MemoryUseMode.TRAINING, CacheMode.NONE, DataType.FLOAT), "statistics + the portable engine's copies");
        // Per example: DL4J M2.1's report does not multiply inference working memory by the minibatch size.
        assertEquals((2 * 32 + 2 * tensor) * 4, report.getMemoryBytes(MemoryType.WORKING_MEMORY_VARIABLE, 8,
                MemoryUseMode.INFERENCE, CacheMode.NONE, DataType.FLOAT));
        assertEquals(8 * tensor * 4, report.getMemoryBytes(MemoryType.ACTIVATIONS, 8, MemoryUseMode.INFERENCE,
                CacheMode.NONE, DataType.FLOAT));
    }
}
