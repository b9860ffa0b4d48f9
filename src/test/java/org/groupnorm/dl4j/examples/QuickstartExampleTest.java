package org.groupnorm.dl4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.junit.jupiter.api.Test;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.ViewIterator;

/** The quickstart's two models are the same network, survive JSON, and learn Fashion-MNIST. */
class QuickstartExampleTest {

    @Test
    void multiLayerNetworkAndGraphAreTheSameNetwork() {
        MultiLayerNetwork net = new MultiLayerNetwork(QuickstartExample.multiLayerConfiguration());
        net.init();
        ComputationGraph graph = new ComputationGraph(QuickstartExample.graphConfiguration());
        graph.init();
        assertEquals(net.numParams(), graph.numParams());
        graph.setParams(net.params());   // same layer order, so the flat parameter vectors line up
        INDArray x = FashionMnist.locate(null).test(1).getFeatures();
        assertTrue(net.output(x).equalsWithEps(graph.outputSingle(x), 1e-5));
        assertEquals(QuickstartExample.multiLayerConfiguration(),
                MultiLayerConfiguration.fromJson(QuickstartExample.multiLayerConfiguration().toJson()));
    }

    @Test
    void learnsFashionMnistBeyondChance() {
        FashionMnist data = FashionMnist.locate(java.nio.file.Paths.get(FashionMnist.EMBEDDED_FOLDER));
        DataSet train = data.train(50);
        MultiLayerNetwork net = new MultiLayerNetwork(QuickstartExample.multiLayerConfiguration());
        net.init();
        for (int epoch = 0; epoch < 3; epoch++) {
            net.fit(new ViewIterator(train, 16));
        }
        double accuracy = net.evaluate(new ViewIterator(data.test(20), 100)).accuracy();
        assertTrue(accuracy > 0.4, "accuracy " + accuracy + " (chance is 0.1)");
    }
}
