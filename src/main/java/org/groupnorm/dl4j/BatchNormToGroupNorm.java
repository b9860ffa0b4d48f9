package org.groupnorm.dl4j;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.deeplearning4j.nn.api.Layer;
import org.deeplearning4j.nn.api.Trainable;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.MultiLayerConfiguration;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.graph.GraphVertex;
import org.deeplearning4j.nn.conf.graph.LayerVertex;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.deeplearning4j.nn.params.BatchNormalizationParamInitializer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.learning.config.Sgd;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Swaps every {@link BatchNormalization} layer of a network (or configuration) for a {@link GroupNormalization} with
 * the same name, inputs and outputs. Every other layer keeps its configuration, parameters and updater state; the
 * new layers take the BatchNorm layer's own updater, regularization, dropout and constraints (not
 * TransferLearning's Sgd(1e-3) default) and, by default, its gamma and beta as their initial values. BatchNorm's
 * running mean and variance are dropped: GroupNorm has none. A BatchNorm's activation setting, which DL4J's
 * BatchNormalization ignores, is not carried over: every new layer is plain GroupNorm (IDENTITY), as the BatchNorm
 * computed, and an ActivationLayer after it stays where it is.
 *
 * <pre>{@code ComputationGraph gn = BatchNormToGroupNorm.convert(resnet50);}</pre>
 *
 * <p>With {@link Options#weightStandardization(boolean)} the convolutions feeding those norms also become
 * {@link WeightStandardizedConvolution}s with the same weights: GN+WS.
 */
public final class BatchNormToGroupNorm {

    private static final Logger log = LoggerFactory.getLogger(BatchNormToGroupNorm.class);

    private BatchNormToGroupNorm() {
    }

    /**
     * What a conversion produced: the new network (or configuration), the names of the swapped layers and of the
     * convolutions turned into {@link WeightStandardizedConvolution}s (empty unless asked for).
     */
    public record Report<T>(T result, List<String> swappedLayers, List<String> standardizedConvolutions) {
        /**
         * "Swapped 53 BatchNormalization layers for GroupNormalization: [bn_conv1, ...]", and when there are any,
         * "; weight-standardized 53 convolutions: [conv1, ...]".
         */
        @Override
        public String toString() {
            return "Swapped " + count(swappedLayers, "BatchNormalization layer") + " for GroupNormalization"
                    + (swappedLayers.isEmpty() ? "" : ": " + swappedLayers)
                    + (standardizedConvolutions.isEmpty() ? "" : "; weight-standardized "
                    + count(standardizedConvolutions, "convolution") + ": " + standardizedConvolutions);
        }

        private static String count(List<String> names, String noun) {
            return names.size() + " " + noun + (names.size() == 1 ? "" : "s");
        }
    }

    /** How the new layers are configured. The defaults follow the paper: 32 groups where the channels allow. */
    public static final class Options {
        private int groups = GroupNormalization.DEFAULT_GROUPS;
        private boolean fixedGroups;
        private int groupSize;
        private Double eps;
        private boolean carryAffine = true;
        private boolean weightStandardization;

        /**
         * Exactly this many groups for every layer (an error names any layer whose channels it does not divide).
         * Without this or {@link #groupSize}, each layer gets 32 groups, or the largest divisor of its channel count
         * that is at most 32.
         */
        public Options groups(int groups) {
            this.groups = groups;
            this.fixedGroups = true;
            this.groupSize = 0;
            return this;
        }

        /** This many channels per group for every layer, instead of a group count. */
        public Options groupSize(int groupSize) {
            this.groupSize = groupSize;
            this.fixedGroups = false;
            return this;
        }

        /** The GroupNorm eps; by default each layer keeps its BatchNorm's eps. */
        public Options eps(double eps) {
            this.eps = eps;
            return this;
        }

        /** Start GroupNorm's gamma/beta from BatchNorm's learned ones (default true); false starts from 1 and 0. */
        public Options carryAffine(boolean carryAffine) {
            this.carryAffine = carryAffine;
            return this;
        }

        /**
         * Also turn every plain {@code ConvolutionLayer} whose output feeds a swapped BatchNorm into a
         * {@link WeightStandardizedConvolution} (default false): the GN+WS recipe. Same weights, name, inputs and
         * training configuration; eps {@value WeightStandardizedConvolution#DEFAULT_EPS}.
         */
        public Options weightStandardization(boolean weightStandardization) {
            this.weightStandardization = weightStandardization;
            return this;
        }

        /** The GroupNorm configuration that replaces one BatchNorm configuration. */
        GroupNormalization replacementFor(BatchNormalization bn) {
            long channels = bn.getNOut();
            GroupNormalization.Builder builder = new GroupNormalization.Builder()
                    .name(bn.getLayerName())
                    .nIn(channels)
                    .eps(eps != null ? eps : bn.getEps());
            if (groupSize > 0) {
                builder.groupSize(groupSize);
            } else {
                builder.groups(fixedGroups ? groups : largestDivisorAtMost(channels, groups));
            }
            if (bn.getCnn2DFormat() == CNN2DFormat.NHWC) {
                builder.dataFormat(TensorLayout.NHWC);
            }
            boolean fixedIdentity = bn.isLockGammaBeta() && bn.getGamma() == 1 && bn.getBeta() == 0;
            if (fixedIdentity) {
                builder.affine(false);   // the same transform, without parameters
            } else if (bn.isLockGammaBeta()) {
                builder.gammaInit(bn.getGamma()).betaInit(bn.getBeta());
            }
            GroupNormalization gn = builder.build();
            // BatchNorm's fixed gamma/beta other than 1/0 become parameters that never change: a learning rate of 0
            // (DL4J's NoOp updater would apply the raw gradient).
            gn.setIUpdater(bn.isLockGammaBeta() && !fixedIdentity ? new Sgd(0.0)
                    : bn.getIUpdater() == null ? null : bn.getIUpdater().clone());
            gn.setBiasUpdater(bn.getBiasUpdater() == null ? null : bn.getBiasUpdater().clone());
            gn.setRegularization(bn.getRegularization());
            gn.setRegularizationBias(bn.getRegularizationBias());
            gn.setIDropout(bn.getIDropout());
            gn.setConstraints(bn.getConstraints());
            gn.setGradientNormalization(bn.getGradientNormalization());
            gn.setGradientNormalizationThreshold(bn.getGradientNormalizationThreshold());
            // No activation: DL4J's BatchNormalization ignores its own, so the network computed BN without one.
            return gn;
        }

        private static int largestDivisorAtMost(long channels, int limit) {
            for (int g = (int) Math.min(limit, channels); g > 1; g--) {
                if (channels % g == 0) {
                    return g;
                }
            }
            return 1;
        }
    }

    public static ComputationGraph convert(ComputationGraph net) {
        return convert(net, new Options());
    }

    public static ComputationGraph convert(ComputationGraph net, Options options) {
        Report<ComputationGraph> report = convertWithReport(net, options);
        log.info("{}", report);
        return report.result();
    }

    public static MultiLayerNetwork convert(MultiLayerNetwork net) {
        return convert(net, new Options());
    }

    public static MultiLayerNetwork convert(MultiLayerNetwork net, Options options) {
        Report<MultiLayerNetwork> report = convertWithReport(net, options);
        log.info("{}", report);
        return report.result();
    }

    public static ComputationGraphConfiguration convert(ComputationGraphConfiguration conf) {
        return convertWithReport(conf, new Options()).result();
    }

    public static MultiLayerConfiguration convert(MultiLayerConfiguration conf) {
        return convertWithReport(conf, new Options()).result();
    }

    public static Report<ComputationGraphConfiguration> convertWithReport(ComputationGraphConfiguration conf,
                                                                          Options options) {
        ComputationGraphConfiguration converted = conf.clone();
        List<String> swapped = new ArrayList<>();
        for (Map.Entry<String, GraphVertex> vertex : converted.getVertices().entrySet()) {
            if (vertex.getValue() instanceof LayerVertex) {
                NeuralNetConfiguration layerConf = ((LayerVertex) vertex.getValue()).getLayerConf();
                if (swapLayer(layerConf, options)) {
                    swapped.add(vertex.getKey());
                }
            }
        }
        List<String> standardized = new ArrayList<>();
        if (options.weightStandardization) {
            for (String norm : swapped) {
                for (String input : converted.getVertexInputs().get(norm)) {
                    GraphVertex vertex = converted.getVertices().get(input);
                    if (vertex instanceof LayerVertex && standardize(((LayerVertex) vertex).getLayerConf())) {
                        standardized.add(input);
                    }
                }
            }
        }
        return new Report<>(converted, Collections.unmodifiableList(swapped),
                Collections.unmodifiableList(standardized));
    }

    public static Report<MultiLayerConfiguration> convertWithReport(MultiLayerConfiguration conf, Options options) {
        MultiLayerConfiguration converted = conf.clone();
        List<String> swapped = new ArrayList<>();
        List<String> standardized = new ArrayList<>();
        for (int i = 0; i < converted.getConfs().size(); i++) {
            NeuralNetConfiguration layerConf = converted.getConf(i);
            if (swapLayer(layerConf, options)) {
                swapped.add(nameOf(converted, i));
                if (options.weightStandardization && i > 0 && standardize(converted.getConf(i - 1))) {
                    standardized.add(nameOf(converted, i - 1));
                }
            }
        }
        return new Report<>(converted, Collections.unmodifiableList(swapped),
                Collections.unmodifiableList(standardized));
    }

    public static Report<ComputationGraph> convertWithReport(ComputationGraph net, Options options) {
        Report<ComputationGraphConfiguration> conf = convertWithReport(net.getConfiguration(), options);
        ComputationGraph converted = new ComputationGraph(conf.result());
        converted.init();
        for (Layer layer : converted.getLayers()) {
            copyParams(net.getLayer(layer.conf().getLayer().getLayerName()), layer, options);
        }
        if (net.getUpdater(false) != null) {
            UpdaterStateCopier.copy(net.getUpdater().getUpdaterBlocks(),
                    converted.getUpdater(true).getUpdaterBlocks(), BatchNormToGroupNorm::layerName);
        }
        return new Report<>(converted, conf.swappedLayers(), conf.standardizedConvolutions());
    }

    public static Report<MultiLayerNetwork> convertWithReport(MultiLayerNetwork net, Options options) {
        Report<MultiLayerConfiguration> conf = convertWithReport(net.getLayerWiseConfigurations(), options);
        MultiLayerNetwork converted = new MultiLayerNetwork(conf.result());
        converted.init();
        for (int i = 0; i < converted.getnLayers(); i++) {
            copyParams(net.getLayer(i), converted.getLayer(i), options);
        }
        if (net.getUpdater(false) != null) {
            UpdaterStateCopier.copy(((org.deeplearning4j.nn.updater.BaseMultiLayerUpdater<?>) net.getUpdater())
                            .getUpdaterBlocks(),
                    ((org.deeplearning4j.nn.updater.BaseMultiLayerUpdater<?>) converted.getUpdater(true))
                            .getUpdaterBlocks(),
                    layer -> String.valueOf(((Layer) layer).getIndex()));
        }
        return new Report<>(converted, conf.swappedLayers(), conf.standardizedConvolutions());
    }

    /** Replaces a BatchNormalization layer configuration in place; false when it is some other layer. */
    private static boolean swapLayer(NeuralNetConfiguration layerConf, Options options) {
        if (!(layerConf.getLayer() instanceof BatchNormalization)) {
            return false;
        }
        layerConf.setLayer(options.replacementFor((BatchNormalization) layerConf.getLayer()));
        layerConf.clearVariables();   // BatchNorm's mean/var keys; the new layer registers gamma and beta on init
        return true;
    }

    /** Replaces a plain 2D ConvolutionLayer configuration by its weight-standardized twin; false for any other. */
    private static boolean standardize(NeuralNetConfiguration layerConf) {
        if (layerConf.getLayer().getClass() != ConvolutionLayer.class) {
            return false;
        }
        layerConf.setLayer(WeightStandardizedConvolution.from((ConvolutionLayer) layerConf.getLayer()));
        return true;
    }

    private static String nameOf(MultiLayerConfiguration conf, int index) {
        String name = conf.getConf(index).getLayer().getLayerName();
        return name != null ? name : "layer" + index;
    }

    /**
     * Parameters of an unchanged (or weight-standardized: same keys) layer verbatim; a swapped layer's gamma/beta
     * from BatchNorm if asked for.
     */
    private static void copyParams(Layer original, Layer converted, Options options) {
        boolean swapped = original.conf().getLayer() instanceof BatchNormalization;
        if (!swapped) {
            for (Map.Entry<String, INDArray> param : original.paramTable().entrySet()) {
                converted.getParam(param.getKey()).assign(param.getValue());
            }
        } else if (options.carryAffine && converted.numParams() > 0
                && original.getParam(BatchNormalizationParamInitializer.GAMMA) != null) {
            for (String key : new String[]{GroupNormParamInitializer.GAMMA, GroupNormParamInitializer.BETA}) {
                INDArray target = converted.getParam(key);
                target.assign(original.getParam(key).reshape(target.shape()));
            }
        }
    }

    /** The layer's name; in a graph's updater blocks the trainable is the layer's vertex, not the layer. */
    private static String layerName(Trainable layer) {
        return layer.getConfig().getLayerName();
    }
}
