package org.groupnorm.dl4j;

import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.Convolution3D;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.RnnOutputLayer;
import org.deeplearning4j.nn.conf.layers.recurrent.SimpleRnn;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.IUpdater;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

/**
 * Small networks with GroupNorm for every layout: a layer with parameters before it (so its gradient checks
 * GroupNorm's dx), GroupNorm, and an output layer. Shared by the gradient, training and serialization tests.
 */
final class TestNetworks {

    static final int MINIBATCH = 3;

    /** A network and a batch for it. */
    record Case(MultiLayerNetwork net, INDArray input, INDArray labels, INDArray mask) {
    }

    private TestNetworks() {
    }

    static NeuralNetConfiguration.ListBuilder base(IUpdater updater, DataType type) {
        return new NeuralNetConfiguration.Builder().seed(12345).dataType(type).updater(updater).list();
    }

    /**
     * Parameterized layer -> GroupNorm(gn) -> output, for the given layout, with a matching random batch. The
     * GroupNorm layer gets no dataFormat: it must infer the layout from the input type. (3D layouts: see below.)
     */
    static Case forLayout(TensorLayout layout, GroupNormalization.Builder gn, IUpdater updater, DataType type) {
        NeuralNetConfiguration.ListBuilder list = base(updater, type);
        int channels = 6;
        INDArray input;
        INDArray labels;
        switch (layout) {
            case FF:
                list.layer(new DenseLayer.Builder().nOut(channels).activation(Activation.TANH).build())
                        .layer(gn.build())
                        .layer(output(3))
                        .setInputType(InputType.feedForward(5));
                input = Nd4j.rand(type, MINIBATCH, 5);
                labels = Nd4j.rand(type, MINIBATCH, 3);
                break;
            case NCW:
            case NWC: {
                RNNFormat format = layout == TensorLayout.NCW ? RNNFormat.NCW : RNNFormat.NWC;
                int steps = 4;
                list.layer(new SimpleRnn.Builder().nOut(channels).activation(Activation.TANH).dataFormat(format)
                                .build())
                        .layer(gn.build())
                        .layer(new RnnOutputLayer.Builder(LossFunction.MSE).nOut(2).activation(Activation.IDENTITY)
                                .dataFormat(format).build())
                        .setInputType(InputType.recurrent(3, steps, format));
                input = format == RNNFormat.NCW ? Nd4j.rand(type, MINIBATCH, 3, steps)
                        : Nd4j.rand(type, MINIBATCH, steps, 3);
                labels = format == RNNFormat.NCW ? Nd4j.rand(type, MINIBATCH, 2, steps)
                        : Nd4j.rand(type, MINIBATCH, steps, 2);
                break;
            }
            case NCHW:
            case NHWC: {
                CNN2DFormat format = layout == TensorLayout.NCHW ? CNN2DFormat.NCHW : CNN2DFormat.NHWC;
                list.layer(new ConvolutionLayer.Builder(2, 2).nOut(channels).activation(Activation.TANH)
                                .dataFormat(format).build())
                        .layer(gn.build())
                        .layer(output(3))
                        .setInputType(InputType.convolutional(4, 5, 2, format));
                input = format == CNN2DFormat.NCHW ? Nd4j.rand(type, MINIBATCH, 2, 4, 5)
                        : Nd4j.rand(type, MINIBATCH, 4, 5, 2);
                labels = Nd4j.rand(type, MINIBATCH, 3);
                break;
            }
            case NCDHW:
            case NDHWC: {
                // DL4J M2.1's Convolution3D emits NCDHW even when configured for NDHWC, so here a second GroupNorm
                // is the layer after the checked one: the first one's gamma/beta gradients pass through its dx.
                Convolution3D.DataFormat format = layout == TensorLayout.NCDHW ? Convolution3D.DataFormat.NCDHW
                        : Convolution3D.DataFormat.NDHWC;
                list.layer(gn.build())
                        .layer(new GroupNormalization.Builder().groups(2).gammaInit(0.7).betaInit(0.1).build())
                        .layer(output(3))
                        .setInputType(InputType.convolutional3D(format, 2, 3, 2, channels));
                input = format == Convolution3D.DataFormat.NCDHW ? Nd4j.rand(type, MINIBATCH, channels, 2, 3, 2)
                        : Nd4j.rand(type, MINIBATCH, 2, 3, 2, channels);
                labels = Nd4j.rand(type, MINIBATCH, 3);
                break;
            }
            default:
                throw new IllegalArgumentException(layout.toString());
        }
        MultiLayerNetwork net = new MultiLayerNetwork(list.build());
        net.init();
        return new Case(net, input, labels, null);
    }

    /** GroupNorm -> conv -> GroupNorm -> output on NCHW, to check stacked GroupNorm layers. */
    static Case stacked(IUpdater updater, DataType type) {
        MultiLayerNetwork net = new MultiLayerNetwork(base(updater, type)
                .layer(new ConvolutionLayer.Builder(2, 2).nOut(4).activation(Activation.TANH).build())
                .layer(new GroupNormalization.Builder().groups(2).build())
                .layer(new ConvolutionLayer.Builder(2, 2).nOut(6).activation(Activation.TANH).build())
                .layer(new GroupNormalization.Builder().groups(3).build())
                .layer(output(3))
                .setInputType(InputType.convolutional(5, 5, 2))
                .build());
        net.init();
        return new Case(net, Nd4j.rand(type, MINIBATCH, 2, 5, 5), Nd4j.rand(type, MINIBATCH, 3), null);
    }

    /** GroupNorm straight on flattened image input (the layer adds the preprocessor). */
    static Case convolutionalFlat(IUpdater updater, DataType type) {
        MultiLayerNetwork net = new MultiLayerNetwork(base(updater, type)
                .layer(new GroupNormalization.Builder().groups(2).build())
                .layer(new ConvolutionLayer.Builder(2, 2).nOut(3).activation(Activation.TANH).build())
                .layer(output(2))
                .setInputType(InputType.convolutionalFlat(4, 4, 2))
                .build());
        net.init();
        return new Case(net, Nd4j.rand(type, MINIBATCH, 2 * 4 * 4), Nd4j.rand(type, MINIBATCH, 2), null);
    }

    /** A recurrent case whose input mask pads the tail of two sequences. */
    static Case masked(TensorLayout layout, IUpdater updater, DataType type) {
        return masked(layout, new GroupNormalization.Builder().groups(3), updater, type);
    }

    /** {@link #masked} with the given GroupNorm. */
    static Case masked(TensorLayout layout, GroupNormalization.Builder gn, IUpdater updater, DataType type) {
        Case c = forLayout(layout, gn, updater, type);
        INDArray mask = Nd4j.ones(type, MINIBATCH, 4);
        mask.putScalar(0, 3, 0);
        mask.putScalar(1, 2, 0);
        mask.putScalar(1, 3, 0);
        return new Case(c.net(), c.input(), c.labels(), mask);
    }

    static OutputLayer output(int classes) {
        return new OutputLayer.Builder(LossFunction.MSE).nOut(classes).activation(Activation.IDENTITY).build();
    }

    static void useEngine(MultiLayerNetwork net, GroupNormalizationLayer.Engine engine) {
        for (Layer layer : net.getLayers()) {
            if (layer instanceof GroupNormalizationLayer) {
                ((GroupNormalizationLayer) layer).setEngine(engine);
            }
        }
    }

    static void useEngine(ComputationGraph net, GroupNormalizationLayer.Engine engine) {
        for (Layer layer : net.getLayers()) {
            if (layer instanceof GroupNormalizationLayer) {
                ((GroupNormalizationLayer) layer).setEngine(engine);
            }
        }
    }
}
