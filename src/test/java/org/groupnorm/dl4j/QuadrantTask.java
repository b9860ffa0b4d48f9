package org.groupnorm.dl4j;

import static org.nd4j.linalg.indexing.NDArrayIndex.all;
import static org.nd4j.linalg.indexing.NDArrayIndex.interval;
import static org.nd4j.linalg.indexing.NDArrayIndex.point;

import java.util.ArrayList;
import java.util.List;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions;

/**
 * A small learnable task for the data-parallel tests (ParallelWrapper, Spark): 12x12 single-channel noise images whose
 * class is the quadrant holding a bright blob, and a conv -> GroupNorm -> ReLU -> pool -> softmax network for it, as a
 * MultiLayerNetwork (GroupNorm is layer 1) and as a ComputationGraph (GroupNorm is vertex "gn").
 */
public final class QuadrantTask {

    public static final int CLASSES = 4;
    public static final int SIZE = 12;

    private QuadrantTask() {
    }

    /** {@code count} minibatches of {@code batchSize}, from a fixed seed. */
    public static List<DataSet> minibatches(int count, int batchSize) {
        Nd4j.getRandom().setSeed(12);
        List<DataSet> batches = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            batches.add(sample(batchSize, i));
        }
        return batches;
    }

    /** {@code count} examples; the classes cycle from {@code offset}. */
    public static DataSet sample(int count, int offset) {
        INDArray x = Nd4j.rand(DataType.FLOAT, count, 1, SIZE, SIZE).muli(0.3);
        INDArray y = Nd4j.zeros(DataType.FLOAT, count, CLASSES);
        for (int i = 0; i < count; i++) {
            int quadrant = (i + offset) % CLASSES;
            int row = quadrant / 2 * SIZE / 2;
            int col = quadrant % 2 * SIZE / 2;
            x.get(point(i), all(), interval(row + 1, row + 5), interval(col + 1, col + 5)).addi(1.0);
            y.putScalar(i, quadrant, 1);
        }
        return new DataSet(x, y);
    }

    /** A batch the network cannot take: 3 input channels where it expects 1. */
    public static DataSet malformed(int count) {
        return new DataSet(Nd4j.rand(DataType.FLOAT, count, 3, SIZE, SIZE), sample(count, 0).getLabels());
    }

    public static MultiLayerConfiguration multiLayerConfiguration() {
        return new NeuralNetConfiguration.Builder().seed(5).updater(new Adam(5e-3)).list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.IDENTITY).build())
                .layer(new GroupNormalization.Builder().groups(4).build())
                .layer(new ActivationLayer(Activation.RELU))
                .layer(new GlobalPoolingLayer(PoolingType.MAX))
                .layer(new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(CLASSES)
                        .activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(SIZE, SIZE, 1))
                .build();
    }

    public static ComputationGraphConfiguration graphConfiguration() {
        return new NeuralNetConfiguration.Builder().seed(5).updater(new Adam(5e-3)).graphBuilder()
                .addInputs("in")
                .setInputTypes(InputType.convolutional(SIZE, SIZE, 1))
                .addLayer("conv", new ConvolutionLayer.Builder(3, 3).nOut(8).activation(Activation.IDENTITY)
                        .build(), "in")
                .addLayer("gn", new GroupNormalization.Builder().groups(4).build(), "conv")
                .addLayer("relu", new ActivationLayer(Activation.RELU), "gn")
                .addLayer("pool", new GlobalPoolingLayer(PoolingType.MAX), "relu")
                .addLayer("out", new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(CLASSES)
                        .activation(Activation.SOFTMAX).build(), "pool")
                .setOutputs("out")
                .build();
    }

    /** The messages of an exception and all its causes, for asserting what a failure says. */
    public static String messages(Throwable e) {
        StringBuilder text = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            text.append(t.getMessage()).append(" | ");
        }
        return text.toString();
    }
}
