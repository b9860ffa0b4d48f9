package org.groupnorm.dl4j.examples;

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
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.examples.support.SmallResNet;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/** The experiment's ResNet: BN and GN versions differ only in the norm layers, and both run and learn. */
class SmallResNetTest {

    @Test
    void batchNormAndGroupNormNetworksDifferOnlyInTheirNormLayers() {
        ComputationGraphConfiguration bn = new SmallResNet().norm(SmallResNet.Norm.BATCH).configuration();
        ComputationGraphConfiguration gn = new SmallResNet().norm(SmallResNet.Norm.GROUP).groups(8).configuration();
        assertEquals(bn.getVertices().keySet(), gn.getVertices().keySet());
        List<String> normLayers = new ArrayList<>();
        int adds = 0;
        for (String name : bn.getVertices().keySet()) {
            GraphVertex bnVertex = bn.getVertices().get(name);
            GraphVertex gnVertex = gn.getVertices().get(name);
            assertEquals(bn.getVertexInputs().get(name), gn.getVertexInputs().get(name), name);
            if (bnVertex instanceof ElementWiseVertex) {
                adds++;
            }
            if (bnVertex instanceof LayerVertex
                    && ((LayerVertex) bnVertex).getLayerConf().getLayer() instanceof BatchNormalization) {
                normLayers.add(name);
                GroupNormalization groupNorm = (GroupNormalization) ((LayerVertex) gnVertex).getLayerConf()
                        .getLayer();
                assertEquals(8, groupNorm.groupsFor(groupNorm.getNIn()), name);
            } else {
                assertEquals(bnVertex.toString(), gnVertex.toString(), name);
            }
        }
        // stem + 2 per block in 3 stages + projections into stages 2 and 3
        assertEquals(9, normLayers.size(), normLayers.toString());
        assertEquals(3, adds);
    }

    @Test
    void bothVersionsClassifyAndLearnOnATinyBatch() {
        for (SmallResNet.Norm norm : new SmallResNet.Norm[]{SmallResNet.Norm.BATCH, SmallResNet.Norm.GROUP}) {
            ComputationGraph net = new SmallResNet().norm(norm).learningRate(0.05).build();
            Nd4j.getRandom().setSeed(3);
            INDArray x = Nd4j.rand(DataType.FLOAT, 4, 1, 28, 28);
            INDArray y = Nd4j.eye(10).getRows(0, 1, 2, 3).castTo(DataType.FLOAT);
            INDArray out = net.outputSingle(x);
            assertArrayEquals(new long[]{4, 10}, out.shape());
            assertEquals(4.0, out.sumNumber().doubleValue(), 1e-4, norm + ": softmax rows sum to 1");
            net.fit(new org.nd4j.linalg.dataset.DataSet(x, y));
            double first = net.score();
            for (int i = 0; i < 30; i++) {
                net.fit(new org.nd4j.linalg.dataset.DataSet(x, y));
            }
            assertTrue(net.score() < first * 0.5, norm + ": loss " + first + " -> " + net.score());
        }
    }

    @Test
    void sameSeedGivesTheSameWeightsForBothNorms() {
        ComputationGraph bn = new SmallResNet().norm(SmallResNet.Norm.BATCH).seed(7).build();
        ComputationGraph gn = new SmallResNet().norm(SmallResNet.Norm.GROUP).seed(7).build();
        assertEquals(bn.getParam("stem_conv_W"), gn.getParam("stem_conv_W"));
        assertEquals(bn.getParam("s3b1_b_conv_W"), gn.getParam("s3b1_b_conv_W"));
        assertEquals(bn.getParam("output_W"), gn.getParam("output_W"));
    }
}
