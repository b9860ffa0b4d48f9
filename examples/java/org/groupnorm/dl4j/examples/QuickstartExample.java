package org.groupnorm.dl4j.examples;

import java.io.File;
import java.io.IOException;
import java.util.Arrays;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.conf.layers.SubsamplingLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.weights.WeightInit;
import org.deeplearning4j.util.ModelSerializer;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.IdxFile;
import org.nd4j.evaluation.classification.Evaluation;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.ViewIterator;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.learning.config.Adam;
import org.nd4j.linalg.lossfunctions.LossFunctions;

/**
 * GroupNorm in a DL4J configuration, like any other layer: a small CNN with {@link GroupNormalization} after each
 * convolution, trained briefly on Fashion-MNIST, evaluated with DL4J's {@link Evaluation} (accuracy and confusion
 * matrix), saved with {@link ModelSerializer} and reloaded. Then the same model as a {@link ComputationGraph}.
 */
public class QuickstartExample {

    private static final int TRAIN_PER_CLASS = 200;   // 2,000 training images: a short run
    private static final int TEST_PER_CLASS = 100;    // 1,000 test images
    private static final int BATCH_SIZE = 16;
    private static final int EPOCHS = 2;
    private static final long SEED = 42;

    public static void main(String[] args) throws IOException {
        // 1. Load data: a folder given as argument, else Debian's full Fashion-MNIST if installed, else the subset
        //    shipped in the repository.
        DataSet train;
        DataSet test;
        FashionMnist data;
        try {
            data = FashionMnist.fromArgs(args);
            train = data.train(TRAIN_PER_CLASS);
            test = data.test(TEST_PER_CLASS);
        } catch (IdxFile.DataFileException e) {
            System.err.println("Cannot read Fashion-MNIST: " + e.getMessage());   // names the file and the problem
            System.exit(1);
            return;
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage());   // the usage
            System.exit(1);
            return;
        }
        System.out.printf("Fashion-MNIST from %s: %d training, %d test images%n", data.folder(),
                train.numExamples(), test.numExamples());

        // 2. Build, train, evaluate, save and reload a MultiLayerNetwork.
        MultiLayerNetwork net = new MultiLayerNetwork(multiLayerConfiguration());
        net.init();
        System.out.println(net.summary());
        for (int epoch = 1; epoch <= EPOCHS; epoch++) {
            net.fit(new ViewIterator(train, BATCH_SIZE));
            System.out.printf("MultiLayerNetwork epoch %d: loss %.4f%n", epoch, net.score());
        }
        Evaluation evaluation = net.evaluate(new ViewIterator(test, 256), Arrays.asList(FashionMnist.CLASS_NAMES));
        System.out.println(evaluation.stats(false, true));   // accuracy, precision/recall/F1, confusion matrix

        File file = File.createTempFile("groupnorm-quickstart", ".zip");
        file.deleteOnExit();
        ModelSerializer.writeModel(net, file, true);
        MultiLayerNetwork restored = ModelSerializer.restoreMultiLayerNetwork(file, true);
        INDArray sample = test.getFeatures().get(NDArrayIndex.interval(0, 8));
        System.out.printf("Saved to %s and reloaded: outputs %s%n", file,
                restored.output(sample).equalsWithEps(net.output(sample), 1e-6) ? "identical" : "DIFFERENT");

        // 3. The same model as a ComputationGraph.
        ComputationGraph graph = new ComputationGraph(graphConfiguration());
        graph.init();
        for (int epoch = 1; epoch <= EPOCHS; epoch++) {
            graph.fit(new ViewIterator(train, BATCH_SIZE));
        }
        Evaluation graphEvaluation = graph.evaluate(new ViewIterator(test, 256));
        System.out.printf("ComputationGraph: accuracy %.4f (MultiLayerNetwork: %.4f)%n", graphEvaluation.accuracy(),
                evaluation.accuracy());
    }

    /** (conv -> GroupNorm with its ReLU fused into it -> max pooling) twice, then a dense layer and softmax. */
    static MultiLayerConfiguration multiLayerConfiguration() {
        return new NeuralNetConfiguration.Builder()
                .seed(SEED)
                .updater(new Adam(2e-3))
                .weightInit(WeightInit.RELU)
                .list()
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(16).hasBias(false).activation(Activation.IDENTITY)
                        .build())
                .layer(new GroupNormalization.Builder().groups(4).activation(Activation.RELU).build())
                .layer(new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build())
                .layer(new ConvolutionLayer.Builder(3, 3).nOut(32).hasBias(false).activation(Activation.IDENTITY)
                        .build())
                .layer(new GroupNormalization.Builder().groups(8).activation(Activation.RELU).build())
                .layer(new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2).build())
                .layer(new DenseLayer.Builder().nOut(64).activation(Activation.RELU).build())
                .layer(new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT).nOut(FashionMnist.CLASSES)
                        .activation(Activation.SOFTMAX).weightInit(WeightInit.XAVIER).build())
                .setInputType(InputType.convolutional(FashionMnist.SIZE, FashionMnist.SIZE, 1))
                .build();
    }

    /** The same layers as {@link #multiLayerConfiguration()}, as a graph. */
    static ComputationGraphConfiguration graphConfiguration() {
        return new NeuralNetConfiguration.Builder()
                .seed(SEED)
                .updater(new Adam(2e-3))
                .weightInit(WeightInit.RELU)
                .graphBuilder()
                .addInputs("image")
                .setInputTypes(InputType.convolutional(FashionMnist.SIZE, FashionMnist.SIZE, 1))
                .addLayer("conv1", new ConvolutionLayer.Builder(3, 3).nOut(16).hasBias(false)
                        .activation(Activation.IDENTITY).build(), "image")
                .addLayer("gn1", new GroupNormalization.Builder().groups(4).activation(Activation.RELU).build(),
                        "conv1")
                .addLayer("pool1", new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2)
                        .build(), "gn1")
                .addLayer("conv2", new ConvolutionLayer.Builder(3, 3).nOut(32).hasBias(false)
                        .activation(Activation.IDENTITY).build(), "pool1")
                .addLayer("gn2", new GroupNormalization.Builder().groups(8).activation(Activation.RELU).build(),
                        "conv2")
                .addLayer("pool2", new SubsamplingLayer.Builder(PoolingType.MAX).kernelSize(2, 2).stride(2, 2)
                        .build(), "gn2")
                .addLayer("dense", new DenseLayer.Builder().nOut(64).activation(Activation.RELU).build(), "pool2")
                .addLayer("output", new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT)
                        .nOut(FashionMnist.CLASSES).activation(Activation.SOFTMAX).weightInit(WeightInit.XAVIER)
                        .build(), "dense")
                .setOutputs("output")
                .build();
    }
}
