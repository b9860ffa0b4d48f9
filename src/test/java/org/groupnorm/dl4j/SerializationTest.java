package org.groupnorm.dl4j;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;

import java.io.File;
import java.io.IOException;
import java.nio.file.Path;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.util.ModelSerializer;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.learning.config.Adam;

/** Configurations round-trip through JSON and YAML; saved models restore and keep training identically. */
class SerializationTest {

    @TempDir
    Path dir;

    private static MultiLayerNetwork network() {
        return TestNetworks.forLayout(TensorLayout.NHWC, new GroupNormalization.Builder().groupSize(2).eps(1e-3)
                .gammaInit(0.5).betaInit(0.25).regularizeGammaBeta(true).l2(1e-4), new Adam(1e-2),
                DataType.FLOAT).net();
    }

    @Test
    void configurationsRoundTripThroughJsonAndYaml() {
        MultiLayerConfiguration conf = network().getLayerWiseConfigurations();
        assertEquals(conf, MultiLayerConfiguration.fromJson(conf.toJson()));
        assertEquals(conf, MultiLayerConfiguration.fromYaml(conf.toYaml()));
        GroupNormalization gn = (GroupNormalization) MultiLayerConfiguration.fromJson(conf.toJson())
                .getConf(1).getLayer();
        assertEquals(2, gn.getGroupSize());
        assertEquals(1e-3, gn.getEps());
        assertEquals(TensorLayout.NHWC, gn.getDataFormat());

        ComputationGraphConfiguration graph = network().toComputationGraph().getConfiguration();
        assertEquals(graph, ComputationGraphConfiguration.fromJson(graph.toJson()));
        assertEquals(graph, ComputationGraphConfiguration.fromYaml(graph.toYaml()));
    }

    @Test
    void scaleAndCenterRoundTripWithoutAnAffineProperty() {
        MultiLayerConfiguration conf = TestNetworks.forLayout(TensorLayout.NCHW, new GroupNormalization.Builder()
                .groups(2).scale(true).center(false), new Adam(1e-2), DataType.FLOAT).net().getLayerWiseConfigurations();
        assertEquals(conf, MultiLayerConfiguration.fromJson(conf.toJson()));
        assertEquals(conf, MultiLayerConfiguration.fromYaml(conf.toYaml()));
        assertTrue(conf.toJson().contains("\"center\" : false") && !conf.toJson().contains("\"affine\""), conf.toJson());
    }

    /** A configuration written by version 0.1.0, which stored "affine" instead of "scale" and "center". */
    @Test
    void configurationsSavedBeforeScaleAndCenterLoadAsBefore() throws IOException {
        String json = new String(SerializationTest.class.getResourceAsStream("/legacy/groupnorm-0.1.0-affine.json")
                .readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        MultiLayerConfiguration conf = MultiLayerConfiguration.fromJson(json);
        GroupNormalization plain = (GroupNormalization) conf.getConf(1).getLayer();
        GroupNormalization affine = (GroupNormalization) conf.getConf(2).getLayer();
        assertTrue(!plain.isScale() && !plain.isCenter(), plain.toString());
        assertTrue(affine.isScale() && affine.isCenter(), affine.toString());
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();
        assertEquals(0, net.getLayer(1).numParams());
        assertEquals(8, net.getLayer(2).numParams());
    }

    @Test
    void savedMultiLayerNetworkRestoresAndTrainsOnIdentically() throws IOException {
        TestNetworks.Case c = TestNetworks.forLayout(TensorLayout.NCHW, new GroupNormalization.Builder().groups(3),
                new Adam(1e-2), DataType.FLOAT);
        MultiLayerNetwork net = c.net();
        net.fit(c.input(), c.labels());   // non-trivial updater state
        File file = dir.resolve("mln.zip").toFile();
        ModelSerializer.writeModel(net, file, true);
        MultiLayerNetwork restored = ModelSerializer.restoreMultiLayerNetwork(file, true);

        assertInstanceOf(GroupNormalizationLayer.class, restored.getLayer(1));
        assertEquals(net.params(), restored.params());
        assertEquals(net.getUpdater().getStateViewArray(), restored.getUpdater().getStateViewArray());
        assertEquals(net.output(c.input()), restored.output(c.input()));
        for (int i = 0; i < 3; i++) {
            net.fit(c.input(), c.labels());
            restored.fit(c.input(), c.labels());
        }
        assertEquals(net.params(), restored.params());
    }

    @Test
    void savedComputationGraphRestoresAndTrainsOnIdentically() throws IOException {
        TestNetworks.Case c = TestNetworks.forLayout(TensorLayout.NCW, new GroupNormalization.Builder().groups(2),
                new Adam(1e-2), DataType.FLOAT);
        ComputationGraph net = c.net().toComputationGraph();
        net.fit(new INDArray[]{c.input()}, new INDArray[]{c.labels()});
        File file = dir.resolve("graph.zip").toFile();
        ModelSerializer.writeModel(net, file, true);
        ComputationGraph restored = ModelSerializer.restoreComputationGraph(file, true);

        assertEquals(net.params(), restored.params());
        assertEquals(net.outputSingle(c.input()), restored.outputSingle(c.input()));
        for (int i = 0; i < 3; i++) {
            net.fit(new INDArray[]{c.input()}, new INDArray[]{c.labels()});
            restored.fit(new INDArray[]{c.input()}, new INDArray[]{c.labels()});
        }
        assertEquals(net.params(), restored.params());
    }
}
