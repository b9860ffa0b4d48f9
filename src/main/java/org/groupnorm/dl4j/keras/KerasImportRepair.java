package org.groupnorm.dl4j.keras;

import java.util.Map;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.dropout.Dropout;
import org.deeplearning4j.nn.conf.graph.GraphVertex;
import org.deeplearning4j.nn.conf.graph.LayerVertex;
import org.deeplearning4j.nn.conf.graph.MergeVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * Makes a Keras-imported network trainable on DL4J 1.0.0-M2.1, whose importer leaves two traps for {@code fit}
 * (inference is unaffected, and both happen with or without GroupNorm in the model):
 * <ul>
 *   <li>every Keras layer without dropout gets a {@code Dropout(1.0)} (keep every activation), whose backward pass
 *   multiplies the gradient by a mask of the layer input's shape; for channels-last convolutions (every Keras CNN)
 *   the two shapes differ ([N,C,H,W] against [N,H,W,C]) and {@code fit} fails with "Op [multiply] execution
 *   failed";</li>
 *   <li>{@code Concatenate(axis=-1)} becomes a {@code MergeVertex} with merge axis -1, whose backward pass indexes
 *   shapes with it ("Index -1 out of bounds").</li>
 * </ul>
 * Each method returns a copy without them: no keep-everything dropout, merge axes counted from the front, the same
 * parameters and updater state, so it computes exactly what the imported network computes.
 * <pre>{@code
 * ComputationGraph imported = KerasModelImport.importKerasModelAndWeights("model.h5");
 * ComputationGraph net = KerasImportRepair.trainable(imported, InputType.convolutional(28, 28, 1, CNN2DFormat.NHWC));
 * net.fit(data);
 * }</pre>
 */
public final class KerasImportRepair {

    private KerasImportRepair() {
    }

    /** A trainable copy of an imported Sequential model (Sequential models have no merges). */
    public static MultiLayerNetwork trainable(MultiLayerNetwork imported) {
        MultiLayerConfiguration conf = imported.getLayerWiseConfigurations().clone();
        for (NeuralNetConfiguration layer : conf.getConfs()) {
            removeNoOpDropout(layer.getLayer());
        }
        MultiLayerNetwork copy = new MultiLayerNetwork(conf);
        copy.init(imported.params().dup(), false);
        copyUpdaterState(imported.getUpdater(false) == null ? null : imported.getUpdater().getStateViewArray(),
                copy.getUpdater(true) == null ? null : copy.getUpdater().getStateViewArray());
        return copy;
    }

    /**
     * A trainable copy of an imported functional model.
     *
     * @param inputTypes the type of each network input, e.g. {@code InputType.convolutional(28, 28, 1,
     *                   CNN2DFormat.NHWC)} for a Keras image input: it gives each merge the rank that resolves a
     *                   negative axis
     */
    public static ComputationGraph trainable(ComputationGraph imported, InputType... inputTypes) {
        ComputationGraphConfiguration conf = imported.getConfiguration().clone();
        Map<String, InputType> activationTypes = conf.getLayerActivationTypes(false, false, inputTypes);
        for (Map.Entry<String, GraphVertex> vertex : conf.getVertices().entrySet()) {
            if (vertex.getValue() instanceof LayerVertex layer) {
                removeNoOpDropout(layer.getLayerConf().getLayer());
            } else if (vertex.getValue() instanceof MergeVertex merge && merge.getMergeAxis() < 0) {
                merge.setMergeAxis(merge.getMergeAxis() + rank(activationTypes.get(vertex.getKey())));
            }
        }
        ComputationGraph copy = new ComputationGraph(conf);
        copy.init(imported.params().dup(), false);
        copyUpdaterState(imported.getUpdater(false) == null ? null : imported.getUpdater().getStateViewArray(),
                copy.getUpdater(true) == null ? null : copy.getUpdater().getStateViewArray());
        return copy;
    }

    /** Adam's moments etc., when the imported network already has them (a freshly imported one has none). */
    private static void copyUpdaterState(INDArray from, INDArray to) {
        if (from != null && to != null) {
            to.assign(from);
        }
    }

    private static void removeNoOpDropout(Layer layer) {
        if (layer.getIDropout() instanceof Dropout dropout && dropout.getPSchedule() == null && dropout.getP() == 1.0) {
            layer.setIDropout(null);
        }
    }

    /** Rank of the arrays of an activation type, minibatch axis included. */
    private static int rank(InputType type) {
        switch (type.getType()) {
            case FF:
                return 2;
            case RNN:
                return 3;
            case CNN:
                return 4;
            case CNN3D:
                return 5;
            default:
                throw new IllegalArgumentException("a merge of " + type + " activations has no known rank");
        }
    }
}
