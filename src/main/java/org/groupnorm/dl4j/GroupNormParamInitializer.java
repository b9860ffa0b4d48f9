package org.groupnorm.dl4j;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.deeplearning4j.nn.api.ParamInitializer;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * GroupNorm's parameters: {@code gamma} then {@code beta}, one value per channel, shape [C], in one flat view. A
 * layer with {@code scale(false)} has no gamma, one with {@code center(false)} no beta. Neither counts as a weight or a bias, so global L1/L2 and bias
 * settings do not reach them unless the layer opts in.
 */
public final class GroupNormParamInitializer implements ParamInitializer {

    public static final String GAMMA = "gamma";
    public static final String BETA = "beta";

    private static final GroupNormParamInitializer INSTANCE = new GroupNormParamInitializer();

    private GroupNormParamInitializer() {
    }

    public static GroupNormParamInitializer getInstance() {
        return INSTANCE;
    }

    @Override
    public long numParams(NeuralNetConfiguration conf) {
        return numParams(conf.getLayer());
    }

    @Override
    public long numParams(Layer layer) {
        return paramKeys(layer).size() * ((GroupNormalization) layer).getNIn();
    }

    @Override
    public List<String> paramKeys(Layer layer) {
        GroupNormalization gn = (GroupNormalization) layer;
        List<String> keys = new ArrayList<>(2);
        if (gn.isScale()) {
            keys.add(GAMMA);
        }
        if (gn.isCenter()) {
            keys.add(BETA);
        }
        return keys;
    }

    @Override
    public List<String> weightKeys(Layer layer) {
        return Collections.emptyList();
    }

    @Override
    public List<String> biasKeys(Layer layer) {
        return Collections.emptyList();
    }

    @Override
    public boolean isWeightParam(Layer layer, String key) {
        return false;
    }

    @Override
    public boolean isBiasParam(Layer layer, String key) {
        return false;
    }

    @Override
    public Map<String, INDArray> init(NeuralNetConfiguration conf, INDArray paramsView, boolean initializeParams) {
        GroupNormalization gn = (GroupNormalization) conf.getLayer();
        Map<String, INDArray> params = views(gn, paramsView);
        if (initializeParams && params.containsKey(GAMMA)) {
            params.get(GAMMA).assign(gn.getGammaInit());
        }
        if (initializeParams && params.containsKey(BETA)) {
            params.get(BETA).assign(gn.getBetaInit());
        }
        for (String key : params.keySet()) {
            conf.addVariable(key);
        }
        return params;
    }

    @Override
    public Map<String, INDArray> getGradientsFromFlattened(NeuralNetConfiguration conf, INDArray gradientView) {
        return views((GroupNormalization) conf.getLayer(), gradientView);
    }

    /** The layer's parameters as consecutive [C] views of the flat array (null or empty when it has none). */
    private static Map<String, INDArray> views(GroupNormalization gn, INDArray flat) {
        Map<String, INDArray> views = Collections.synchronizedMap(new LinkedHashMap<>());
        long channels = gn.getNIn();
        long offset = 0;
        for (String key : INSTANCE.paramKeys(gn)) {
            views.put(key, flat.reshape(flat.length()).get(NDArrayIndex.interval(offset, offset + channels)));
            offset += channels;
        }
        return views;
    }
}
