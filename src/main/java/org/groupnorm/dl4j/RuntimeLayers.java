package org.groupnorm.dl4j;

import java.util.Collection;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.ParamInitializer;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.optimize.api.TrainingListener;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * What every DL4J layer configuration's {@code instantiate} does with the runtime layer it creates, for our layers,
 * whose runtimes are our own classes (DL4J's stock SameDiffLayer runtime gets gradients and setParam wrong).
 */
final class RuntimeLayers {

    private RuntimeLayers() {
    }

    /** Hands {@code layer} its listeners, index, parameter view and (initialized) parameter table, as DL4J does. */
    static <T extends Layer> T wire(T layer, NeuralNetConfiguration conf, ParamInitializer initializer,
                                    Collection<TrainingListener> trainingListeners, int layerIndex,
                                    INDArray layerParamsView, boolean initializeParams) {
        layer.setListeners(trainingListeners);
        layer.setIndex(layerIndex);
        layer.setParamsViewArray(layerParamsView);
        layer.setParamTable(initializer.init(conf, layerParamsView, initializeParams));
        layer.setConf(conf);
        return layer;
    }
}
