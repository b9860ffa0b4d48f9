package org.groupnorm.dl4j.examples.support;

import org.deeplearning4j.nn.conf.ComputationGraphConfiguration;
import org.deeplearning4j.nn.conf.ConvolutionMode;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.graph.ElementWiseVertex;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.ActivationLayer;
import org.deeplearning4j.nn.conf.layers.BatchNormalization;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.GlobalPoolingLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.layers.PoolingType;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.weights.WeightInit;
import java.util.Arrays;
import java.util.Locale;
import java.util.Optional;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.WeightStandardizedConvolution;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.learning.config.Nesterovs;
import org.nd4j.linalg.lossfunctions.LossFunctions;
import org.nd4j.linalg.schedule.MapSchedule;
import org.nd4j.linalg.schedule.ScheduleType;

/**
 * A ResNet for 28x28 grayscale images, as in the paper's experiments on a small scale: a 3x3 stem (stride 2 by
 * default), three stages of
 * basic residual blocks (two 3x3 convolutions each, {@link ElementWiseVertex} add, projection shortcut when the shape
 * changes), global average pooling and a softmax classifier. Every convolution is followed by the chosen
 * normalization (GroupNorm with the block's first ReLU fused into it; with {@link Norm#GROUP_WS} every convolution is
 * also weight-standardized); everything else (initialization, updater, schedule) is the same whichever norm is chosen,
 * so the networks differ only there.
 */
public final class SmallResNet {

    /** The normalization after each convolution. {@code NONE} exists to measure what the norm layers cost. */
    public enum Norm {
        BATCH("BN", "BatchNorm"),
        GROUP("GN", "GroupNorm"),
        /** GroupNorm after {@link WeightStandardizedConvolution}s: the GN+WS recipe (Qiao et al. 2019). */
        GROUP_WS("GNWS", "GroupNorm + Weight Standardization"),
        NONE("NONE", "no norm");

        private final String label;
        private final String title;

        Norm(String label, String title) {
            this.label = label;
            this.title = title;
        }

        /** The short name in flags, tables and CSVs: BN, GN, GNWS, NONE. */
        public String label() {
            return label;
        }

        /** The long name, for chart legends. */
        public String title() {
            return title;
        }

        /** The norm a {@link #label()} names, in any case; {@code GN+WS} also names GNWS. */
        public static Optional<Norm> fromLabel(String label) {
            String wanted = label.trim().toUpperCase(Locale.ROOT).replace("+", "");
            return Arrays.stream(values()).filter(norm -> norm.label.equals(wanted)).findFirst();
        }

        /** A GroupNorm after every convolution (with or without Weight Standardization). */
        public boolean isGroupNorm() {
            return this == GROUP || this == GROUP_WS;
        }
    }

    /** Weight decay 5e-4, as in the paper's ImageNet set-up. */
    private static final double WEIGHT_DECAY = 5e-4;
    /** The stem halves the resolution before the first stage (14x14, then 7x7 and 4x4): a quarter of the work. */
    private static final int STEM_STRIDE = 2;
    /** The learning rate at {@link #BASE_BATCH}; {@link #learningRateFor} scales it linearly with the batch size. */
    public static final double BASE_LEARNING_RATE = 0.1;
    public static final int BASE_BATCH = 32;

    private Norm norm = Norm.GROUP;
    private int groups = 8;
    /** DL4J's default: running statistics = 0.9 * running + 0.1 * batch statistics (PyTorch momentum 0.1). */
    private double batchNormDecay = 0.9;
    private int[] widths = {16, 32, 64};
    private int blocksPerStage = 1;
    private double learningRate = BASE_LEARNING_RATE;
    /** Epoch from which the learning rate is a tenth, or -1 for a constant rate. */
    private int learningRateDropEpoch = -1;
    private long seed = 42;

    public SmallResNet norm(Norm norm) {
        this.norm = norm;
        return this;
    }

    public SmallResNet groups(int groups) {
        this.groups = groups;
        return this;
    }

    public SmallResNet batchNormDecay(double decay) {
        this.batchNormDecay = decay;
        return this;
    }

    public SmallResNet widths(int... widths) {
        this.widths = widths.clone();
        return this;
    }

    public SmallResNet blocksPerStage(int blocksPerStage) {
        this.blocksPerStage = blocksPerStage;
        return this;
    }

    /**
     * The paper's linear scaling rule: {@value #BASE_LEARNING_RATE} at {@value #BASE_BATCH} images per step,
     * proportionally less (or more) at other batch sizes.
     */
    public static double learningRateFor(int batchSize) {
        return BASE_LEARNING_RATE * batchSize / BASE_BATCH;
    }

    public SmallResNet learningRate(double learningRate) {
        this.learningRate = learningRate;
        return this;
    }

    public SmallResNet learningRateDropEpoch(int epoch) {
        this.learningRateDropEpoch = epoch;
        return this;
    }

    public SmallResNet seed(long seed) {
        this.seed = seed;
        return this;
    }

    public ComputationGraphConfiguration configuration() {
        MapSchedule.Builder schedule = new MapSchedule.Builder(ScheduleType.EPOCH).add(0, learningRate);
        if (learningRateDropEpoch > 0) {
            schedule.add(learningRateDropEpoch, learningRate / 10);
        }
        ComputationGraphConfiguration.GraphBuilder graph = new NeuralNetConfiguration.Builder()
                .seed(seed)
                .updater(new Nesterovs(schedule.build(), 0.9))
                // Decay scaled by the learning rate (as SGD's weight decay in the paper's setup), so that with the
                // rate scaled linearly with batch size every batch size gets the same decay per epoch. Conv and dense
                // weights only: norm layers' gamma/beta are not decayed (neither BatchNorm's nor GroupNorm's).
                .weightDecay(WEIGHT_DECAY, true)
                .weightInit(WeightInit.RELU)
                .convolutionMode(ConvolutionMode.Same)
                .trainingWorkspaceMode(WorkspaceMode.ENABLED)
                .inferenceWorkspaceMode(WorkspaceMode.ENABLED)
                .graphBuilder()
                .addInputs("image")
                .setInputTypes(InputType.convolutional(FashionMnist.SIZE, FashionMnist.SIZE, 1));

        String last = convNormRelu(graph, "stem", "image", widths[0], STEM_STRIDE);
        int channels = widths[0];
        for (int stage = 0; stage < widths.length; stage++) {
            for (int block = 0; block < blocksPerStage; block++) {
                int stride = stage > 0 && block == 0 ? 2 : 1;
                last = residualBlock(graph, "s" + (stage + 1) + "b" + (block + 1), last, channels, widths[stage],
                        stride);
                channels = widths[stage];
            }
        }
        graph.addLayer("pool", new GlobalPoolingLayer.Builder(PoolingType.AVG).build(), last)
                .addLayer("output", new OutputLayer.Builder(LossFunctions.LossFunction.MCXENT)
                        .nOut(FashionMnist.CLASSES).activation(Activation.SOFTMAX).weightInit(WeightInit.XAVIER)
                        .build(), "pool")
                .setOutputs("output");
        return graph.build();
    }

    public ComputationGraph build() {
        ComputationGraph net = new ComputationGraph(configuration());
        net.init();
        return net;
    }

    /** conv -> norm -> ReLU and the (add) -> ReLU of the block's end; returns the last vertex's name. */
    private String residualBlock(ComputationGraphConfiguration.GraphBuilder graph, String name, String input,
                                 int inChannels, int outChannels, int stride) {
        String first = convNormRelu(graph, name + "_a", input, outChannels, stride);
        String second = convNorm(graph, name + "_b", first, outChannels, 3, 1);
        String shortcut = input;
        if (stride != 1 || inChannels != outChannels) {
            shortcut = convNorm(graph, name + "_proj", input, outChannels, 1, stride);
        }
        graph.addVertex(name + "_add", new ElementWiseVertex(ElementWiseVertex.Op.Add), second, shortcut);
        graph.addLayer(name + "_relu", new ActivationLayer(Activation.RELU), name + "_add");
        return name + "_relu";
    }

    /**
     * conv -> norm -> ReLU. GroupNorm applies the ReLU itself (fused: no extra pass, no extra layer); BatchNorm and
     * no norm are followed by an {@link ActivationLayer} (DL4J's BatchNormalization ignores an activation).
     */
    private String convNormRelu(ComputationGraphConfiguration.GraphBuilder graph, String name, String input,
                                int channels, int stride) {
        if (norm.isGroupNorm()) {
            return convNorm(graph, name, input, channels, 3, stride, Activation.RELU);
        }
        String normed = convNorm(graph, name, input, channels, 3, stride, Activation.IDENTITY);
        graph.addLayer(name + "_relu", new ActivationLayer(Activation.RELU), normed);
        return name + "_relu";
    }

    private String convNorm(ComputationGraphConfiguration.GraphBuilder graph, String name, String input,
                            int channels, int kernel, int stride) {
        return convNorm(graph, name, input, channels, kernel, stride, Activation.IDENTITY);
    }

    private String convNorm(ComputationGraphConfiguration.GraphBuilder graph, String name, String input,
                            int channels, int kernel, int stride, Activation groupNormActivation) {
        ConvolutionLayer.BaseConvBuilder<?> conv = norm == Norm.GROUP_WS
                ? new WeightStandardizedConvolution.Builder(kernel, kernel) : new ConvolutionLayer.Builder(kernel, kernel);
        graph.addLayer(name + "_conv", conv.stride(stride, stride).nOut(channels).hasBias(norm == Norm.NONE)
                .activation(Activation.IDENTITY).build(), input);
        Layer normLayer = normLayer(groupNormActivation);
        if (normLayer == null) {
            return name + "_conv";
        }
        graph.addLayer(name + "_norm", normLayer, name + "_conv");
        return name + "_norm";
    }

    private Layer normLayer(Activation groupNormActivation) {
        switch (norm) {
            case BATCH:
                return new BatchNormalization.Builder().decay(batchNormDecay).build();
            case GROUP:
            case GROUP_WS:
                return new GroupNormalization.Builder().groups(groups).activation(groupNormActivation).build();
            default:
                return null;
        }
    }
}
