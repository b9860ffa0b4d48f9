package org.groupnorm.dl4j.examples;

import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.linalg.activations.impl.ActivationReLU;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.graph.ElementWiseVertex;
import org.deeplearning4j.nn.conf.graph.GraphVertex;
import org.deeplearning4j.nn.conf.graph.LayerVertex;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.WeightStandardizedConvolution;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The experiment's ResNet: BN, GN and GN+WS versions differ only in the norm layers (and GN+WS in its convolutions),
 * and all run and learn.
 */
class SmallResNetTest {

    @Test
    void batchNormAndGroupNormNetworksDifferOnlyInTheirNormLayers() {
        ComputationGraphConfiguration bn = new SmallResNet().norm(SmallResNet.Norm.BATCH).configuration();
        ComputationGraphConfiguration gn = new SmallResNet().norm(SmallResNet.Norm.GROUP).groups(8).configuration();
        // GroupNorm takes the ReLU that follows a norm into itself: BN's "norm -> relu" pair is GN's one norm vertex.
        Map<String, String> gnName = new HashMap<>();
        for (String name : bn.getVertices().keySet()) {
            List<String> inputs = bn.getVertexInputs().get(name);
            boolean reluAfterNorm = isLayer(bn, name, ActivationLayer.class) && inputs.size() == 1
                    && isLayer(bn, inputs.get(0), BatchNormalization.class);
            gnName.put(name, reluAfterNorm ? inputs.get(0) : name);
        }
        for (String input : bn.getNetworkInputs()) {
            gnName.put(input, input);
        }
        Set<String> gnVertices = new HashSet<>(gn.getVertices().keySet());
        gnVertices.addAll(gn.getNetworkInputs());
        assertEquals(new HashSet<>(gnName.values()), gnVertices);
        List<String> normLayers = new ArrayList<>();
        int adds = 0;
        int fused = 0;
        for (String name : bn.getVertices().keySet()) {
            if (!gnName.get(name).equals(name)) {
                fused++;
                continue;
            }
            GraphVertex bnVertex = bn.getVertices().get(name);
            GraphVertex gnVertex = gn.getVertices().get(name);
            List<String> bnInputs = bn.getVertexInputs().get(name);
            assertEquals(bnInputs == null ? null : bnInputs.stream().map(gnName::get).collect(Collectors.toList()),
                    gn.getVertexInputs().get(name), name);
            if (bnVertex instanceof ElementWiseVertex) {
                adds++;
            }
            if (isLayer(bn, name, BatchNormalization.class)) {
                normLayers.add(name);
                GroupNormalization groupNorm = (GroupNormalization) ((LayerVertex) gnVertex).getLayerConf()
                        .getLayer();
                assertEquals(8, groupNorm.groupsFor(groupNorm.getNIn()), name);
                boolean followedByRelu = gnName.containsValue(name) && gnName.entrySet().stream()
                        .anyMatch(e -> e.getValue().equals(name) && !e.getKey().equals(name));
                assertEquals(followedByRelu ? new ActivationReLU() : new ActivationIdentity(),
                        groupNorm.fusedActivation(), name);
            } else {
                assertEquals(bnVertex.toString(), gnVertex.toString(), name);
            }
        }
        // stem + 2 per block in 3 stages + projections into stages 2 and 3; ReLU fused after the stem and each
        // block's first convolution.
        assertEquals(9, normLayers.size(), normLayers.toString());
        assertEquals(3, adds);
        assertEquals(4, fused);
    }

    @Test
    void groupNormWithWeightStandardizationDiffersFromGroupNormOnlyInItsConvolutions() {
        ComputationGraphConfiguration gn = new SmallResNet().norm(SmallResNet.Norm.GROUP).configuration();
        ComputationGraphConfiguration gnws = new SmallResNet().norm(SmallResNet.Norm.GROUP_WS).configuration();
        assertEquals(gn.getVertexInputs(), gnws.getVertexInputs());
        int standardized = 0;
        for (String name : gn.getVertices().keySet()) {
            if (isLayer(gn, name, ConvolutionLayer.class)) {
                ConvolutionLayer plain = (ConvolutionLayer) layer(gn, name);
                WeightStandardizedConvolution ws = (WeightStandardizedConvolution) layer(gnws, name);
                assertEquals(WeightStandardizedConvolution.from(plain), ws, name);
                standardized++;
            } else {
                assertEquals(gn.getVertices().get(name), gnws.getVertices().get(name), name);
            }
        }
        assertEquals(9, standardized);
    }

    private static Object layer(ComputationGraphConfiguration conf, String name) {
        return ((LayerVertex) conf.getVertices().get(name)).getLayerConf().getLayer();
    }

    private static boolean isLayer(ComputationGraphConfiguration conf, String name, Class<?> type) {
        GraphVertex vertex = conf.getVertices().get(name);
        return vertex instanceof LayerVertex && type.isInstance(((LayerVertex) vertex).getLayerConf().getLayer());
    }

    @Test
    void everyNormalizedVersionClassifiesAndLearnsOnATinyBatch() {
        for (SmallResNet.Norm norm : new SmallResNet.Norm[]{SmallResNet.Norm.BATCH, SmallResNet.Norm.GROUP,
                SmallResNet.Norm.GROUP_WS}) {
            ComputationGraph net = new SmallResNet().norm(norm).learningRate(0.05).build();
            Nd4j.getRandom().setSeed(3);
            INDArray x = Nd4j.rand(DataType.FLOAT, 4, 1, 28, 28);
            INDArray y = Nd4j.eye(10).getRows(0, 1, 2, 3).castTo(DataType.FLOAT);
            INDArray out = net.outputSingle(x);
            assertArrayEquals(new long[]{4, 10}, out.shape());
            assertEquals(4.0, out.sumNumber().doubleValue(), 1e-4, norm + ": softmax rows sum to 1");
            net.fit(new DataSet(x, y));
            double first = net.score();
            for (int i = 0; i < 30; i++) {
                net.fit(new DataSet(x, y));
            }
            assertTrue(net.score() < first * 0.5, norm + ": loss " + first + " -> " + net.score());
        }
    }

    @Test
    void sameSeedGivesTheSameWeightsForEveryNorm() {
        ComputationGraph bn = new SmallResNet().norm(SmallResNet.Norm.BATCH).seed(7).build();
        for (SmallResNet.Norm norm : new SmallResNet.Norm[]{SmallResNet.Norm.GROUP, SmallResNet.Norm.GROUP_WS}) {
            ComputationGraph other = new SmallResNet().norm(norm).seed(7).build();
            assertEquals(bn.getParam("stem_conv_W"), other.getParam("stem_conv_W"), norm.label());
            assertEquals(bn.getParam("s3b1_b_conv_W"), other.getParam("s3b1_b_conv_W"), norm.label());
            assertEquals(bn.getParam("output_W"), other.getParam("output_W"), norm.label());
        }
    }
}
