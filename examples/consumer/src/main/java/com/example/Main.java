package com.example;

import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.groupnorm.dl4j.GroupNormalization;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions.LossFunction;

/** The README's usage snippet as a whole program: a small CNN with GroupNorm, trained a few steps on random data. */
public class Main {

    public static void main(String[] args) {
        MultiLayerConfiguration conf = new NeuralNetConfiguration.Builder()
                .seed(42)
                .updater(new Adam(1e-3))
                .list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(64).activation(Activation.IDENTITY).build())
                .layer(new GroupNormalization.Builder().groups(32).build())   // channels and layout from the input
                .layer(new ActivationLayer(Activation.RELU))
                .layer(new GlobalPoolingLayer())
                .layer(new OutputLayer.Builder(LossFunction.MCXENT).nOut(10).activation(Activation.SOFTMAX).build())
                .setInputType(InputType.convolutional(28, 28, 1))
                .build();
        MultiLayerNetwork net = new MultiLayerNetwork(conf);
        net.init();

        INDArray images = Nd4j.rand(DataType.FLOAT, 8, 1, 28, 28);
        INDArray labels = Nd4j.eye(10).getRows(0, 1, 2, 3, 4, 5, 6, 7);
        double before = net.score(new org.nd4j.linalg.dataset.DataSet(images, labels));
        for (int step = 0; step < 20; step++) {
            net.fit(images, labels);
        }
        System.out.printf("GroupNorm CNN: loss %.4f -> %.4f after 20 steps%n", before, net.score());
    }
}
