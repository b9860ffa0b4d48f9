package org.groupnorm.dl4j.examples;

import java.io.File;
import java.util.Arrays;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.modelimport.keras.KerasModelImport;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.IdxFile;
import org.groupnorm.dl4j.keras.KerasGroupNormalization;
import org.groupnorm.dl4j.keras.KerasImportRepair;
import org.nd4j.evaluation.classification.Evaluation;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.dataset.ViewIterator;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Imports a Keras CNN with two GroupNormalization layers (trained in Keras 3 on the repository's Fashion-MNIST subset
 * by tools/fixtures/make_keras_fixtures.py, saved in the Keras 2 h5 layout), checks that DL4J computes what Keras
 * computed, evaluates it, and fine-tunes it in DL4J.
 */
public class KerasImportExample {

    private static final String MODEL_FOLDER = "examples/data/keras/fashion_gn_cnn";
    /** Keras and DL4J both compute in float32: their outputs agree to rounding. */
    private static final double MAX_DIFFERENCE = 1e-5;
    private static final int FINE_TUNE_PER_CLASS = 200;   // 2,000 training images, one epoch
    private static final int TEST_PER_CLASS = 200;        // the subset's 2,000 test images
    private static final int BATCH_SIZE = 32;

    public static void main(String[] args) throws Exception {
        // 1. Import: register the GroupNormalization mapper once, then use DL4J's standard call.
        KerasGroupNormalization.register();
        MultiLayerNetwork net = KerasModelImport.importKerasSequentialModelAndWeights(
                new File(MODEL_FOLDER, "model.h5").getPath());
        System.out.println(net.summary());
        printGroupNorms(net);

        // 2. Same numbers as Keras: the 16 test images the generator ran through Keras, and Keras' outputs.
        INDArray images = Nd4j.createFromNpyFile(new File(MODEL_FOLDER, "x.npy"));
        INDArray kerasOutput = Nd4j.createFromNpyFile(new File(MODEL_FOLDER, "y.npy"));
        double difference = kerasOutput.sub(net.output(images)).amaxNumber().doubleValue();
        System.out.printf("Output on %d images vs Keras: max difference %.2e (%s)%n", images.size(0), difference,
                difference <= MAX_DIFFERENCE ? "match" : "MISMATCH");
        if (difference > MAX_DIFFERENCE) {
            System.exit(1);
        }

        // 3. Evaluate, fine-tune one epoch with the file's optimizer (Adam 1e-3), evaluate again.
        FashionMnist data;
        try {
            data = FashionMnist.fromArgs(args);
        } catch (IdxFile.DataFileException e) {
            System.err.println("Cannot read Fashion-MNIST: " + e.getMessage());   // names the file and the problem
            System.exit(1);
            return;
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage());   // the usage
            System.exit(1);
            return;
        }
        DataSet test = channelsLast(data.test(TEST_PER_CLASS));
        System.out.printf("Imported model, %d test images: accuracy %.4f%n", test.numExamples(), accuracy(net, test));
        MultiLayerNetwork trainable = KerasImportRepair.trainable(net);   // see KerasImportRepair for why
        DataSet train = channelsLast(data.train(FINE_TUNE_PER_CLASS));
        train.shuffle(42);
        long start = System.nanoTime();
        trainable.fit(new ViewIterator(train, BATCH_SIZE));
        System.out.printf("Fine-tuned 1 epoch on %d images in %.1f s: loss %.4f, accuracy %.4f%n",
                train.numExamples(), (System.nanoTime() - start) / 1e9, trainable.score(), accuracy(trainable, test));
    }

    /** The Keras model reads [N, 28, 28, 1] images; the Fashion-MNIST loader gives [N, 1, 28, 28]. */
    private static DataSet channelsLast(DataSet data) {
        return new DataSet(data.getFeatures().permute(0, 2, 3, 1).dup('c'), data.getLabels());
    }

    private static double accuracy(MultiLayerNetwork net, DataSet test) {
        Evaluation evaluation = net.evaluate(new ViewIterator(test, 256), Arrays.asList(FashionMnist.CLASS_NAMES));
        return evaluation.accuracy();
    }

    private static void printGroupNorms(MultiLayerNetwork net) {
        for (Layer layer : net.getLayers()) {
            if (layer.conf().getLayer() instanceof GroupNormalization gn) {
                System.out.printf("%s: %d channels in %d groups, eps %s, layout %s%n", gn.getLayerName(), gn.getNIn(),
                        gn.groupsFor(gn.getNIn()), gn.getEps(), gn.getDataFormat());
            }
        }
    }
}
