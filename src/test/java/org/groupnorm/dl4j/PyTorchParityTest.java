package org.groupnorm.dl4j;

import static org.groupnorm.dl4j.NpyFixtures.load;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.deeplearning4j.nn.gradient.Gradient;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer.Engine;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.activations.Activation;
import org.nd4j.linalg.activations.impl.ActivationLReLU;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.shade.jackson.databind.JsonNode;
import org.nd4j.shade.jackson.databind.ObjectMapper;

/**
 * y, dx, dgamma and dbeta match torch.nn.functional.group_norm (float64 fixtures in test resources) on every engine:
 * to 1e-10 in float64 and to 2e-3 of the output scale in float32. A case with an activation (fused into the layer;
 * torch applies it after group_norm) runs on the KERNEL and PORTABLE engines.
 */
class PyTorchParityTest {

    private static final double FLOAT64_TOLERANCE = 1e-10;
    private static final double FLOAT32_RELATIVE_TOLERANCE = 2e-3;

    static Stream<Arguments> cases() throws IOException, URISyntaxException {
        Path root = Path.of(PyTorchParityTest.class.getResource("/fixtures/groupnorm-pytorch").toURI());
        try (Stream<Path> dirs = Files.list(root)) {
            // The SAMEDIFF engine runs GroupNorm alone: cases with an activation run on the other two.
            return dirs.sorted().map(Path::toFile).flatMap(dir -> {
                JsonNode spec = readCase(dir);
                return Stream.of(Engine.KERNEL, Engine.PORTABLE, Engine.SAMEDIFF)
                        .filter(engine -> engine != Engine.SAMEDIFF || !spec.has("activation"))
                        .flatMap(engine -> Stream.of(DataType.DOUBLE, DataType.FLOAT)
                                .map(type -> Arguments.of(dir.getName(), dir, spec, engine, type)));
            }).toList().stream();
        }
    }

    @ParameterizedTest(name = "{0} {3} {4}")
    @MethodSource("cases")
    void matchesPyTorchOnEveryLayout(String name, File dir, JsonNode spec, Engine engine, DataType type)
            throws IOException {
        boolean affine = !"none".equals(spec.get("affine").asText());
        INDArray x = load(dir, "x").castTo(type);
        GroupNormalization conf = new GroupNormalization.Builder()
                .nIn(spec.get("channels").asLong())
                .groups(spec.get("groups").asInt())
                .eps(spec.get("eps").asDouble())
                .affine(affine)
                .dataFormat(TensorLayout.valueOf(spec.get("layout").asText()))
                .activation(spec.has("alpha") ? new ActivationLReLU(spec.get("alpha").asDouble())
                        : Activation.valueOf(spec.path("activation").asText("IDENTITY")).getActivationFunction())
                .build();
        GroupNormHarness gn = new GroupNormHarness(conf, type, engine);
        if (affine) {
            gn.withParams(load(dir, "gamma"), load(dir, "beta"));
        }
        INDArray y = gn.forward(x);
        Pair<Gradient, INDArray> grads = gn.backward(load(dir, "dy").castTo(type));

        assertClose(name + " y", load(dir, "y"), y, type);
        assertClose(name + " dx", load(dir, "dx"), grads.getSecond(), type);
        if (affine) {
            assertClose(name + " dgamma", load(dir, "dgamma"), grads.getFirst().getGradientFor("gamma"), type);
            assertClose(name + " dbeta", load(dir, "dbeta"), grads.getFirst().getGradientFor("beta"), type);
        }
    }

    /** A case's case.json: layout, shape, channels, groups, eps, affine and, when it has one, its activation. */
    private static JsonNode readCase(File dir) {
        try {
            return new ObjectMapper().readTree(new File(dir, "case.json"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void assertClose(String what, INDArray expected, INDArray actual, DataType type) {
        NpyFixtures.assertClose(what, expected, actual, type, FLOAT64_TOLERANCE, FLOAT32_RELATIVE_TOLERANCE);
    }
}
