package org.groupnorm.dl4j.spark;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * A Spark standalone master and two workers on 127.0.0.1, started and stopped by {@code scripts/spark-cluster.sh}
 * (what users run) in a folder of their own under {@code target/}, on free ports. Every process it started is known
 * by the PID the script wrote, so a test can kill one and check that nothing is left.
 */
final class LocalSparkCluster implements AutoCloseable {

    private static final Path SCRIPT = Path.of("scripts", "spark-cluster.sh");
    private static final long SCRIPT_TIMEOUT_SECONDS = 180;

    private final Path folder;
    private final int masterPort;
    private final int webUiPort;

    private LocalSparkCluster(Path folder, int masterPort, int webUiPort) {
        this.folder = folder;
        this.masterPort = masterPort;
        this.webUiPort = webUiPort;
    }

    /** Starts the cluster and waits until both workers are registered (the script's own wait). */
    static LocalSparkCluster start(Path folder) throws IOException, InterruptedException {
        LocalSparkCluster cluster = new LocalSparkCluster(folder, freePort(), freePort());
        try {
            cluster.script("start");
        } catch (IOException | RuntimeException e) {
            cluster.close();
            throw e;
        }
        return cluster;
    }

    String masterUrl() {
        return "spark://127.0.0.1:" + masterPort;
    }

    /** The PID the script wrote for a daemon ("master", "worker-1", "worker-2"). */
    long pid(String daemon) throws IOException {
        return Long.parseLong(Files.readString(folder.resolve("pids").resolve(daemon + ".pid")).trim());
    }

    /** Stops every process the script started, by the PIDs it wrote. */
    @Override
    public void close() throws IOException, InterruptedException {
        script("stop");
    }

    private void script(String command) throws IOException, InterruptedException {
        ProcessBuilder builder = new ProcessBuilder("bash", SCRIPT.toString(), command).redirectErrorStream(true)
                .redirectOutput(folder.resolveSibling(folder.getFileName() + "-" + command + ".log").toFile());
        Files.createDirectories(folder.getParent());
        Map<String, String> env = builder.environment();
        env.put("SPARK_CLUSTER_DIR", folder.toString());
        env.put("SPARK_MASTER_PORT", String.valueOf(masterPort));
        env.put("SPARK_MASTER_WEBUI_PORT", String.valueOf(webUiPort));
        env.put("SPARK_WORKER_MEMORY", "2g");
        Process process = builder.start();
        if (!process.waitFor(SCRIPT_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            throw new IllegalStateException("spark-cluster.sh " + command + " did not finish in "
                    + SCRIPT_TIMEOUT_SECONDS + " s");
        }
        if (process.exitValue() != 0) {
            throw new IllegalStateException("spark-cluster.sh " + command + " failed: " + output(command));
        }
    }

    private String output(String command) throws IOException {
        return Files.readString(folder.resolveSibling(folder.getFileName() + "-" + command + ".log"));
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0)) {
            return socket.getLocalPort();
        }
    }
}
