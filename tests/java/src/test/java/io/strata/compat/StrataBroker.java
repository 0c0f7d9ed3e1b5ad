package io.strata.compat;

import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/** A real `strata serve` process (the binary under test) on a free port with its own data dir. */
public final class StrataBroker implements AutoCloseable {
    private final Path dataDir;
    private final Path logFile;
    private final int port;
    private final String configToml;
    private final String external;
    private Process process;

    public StrataBroker() throws IOException {
        this(null);
    }

    /** {@code configToml}: BrokerConfig fields (see crates/broker/src/config.rs), or null. */
    public StrataBroker(String configToml) throws IOException {
        this.dataDir = Files.createTempDirectory("strata-java-");
        this.external = System.getProperty("external.bootstrap", "");
        this.port = external.isEmpty() ? freePort() : Integer.parseInt(external.substring(external.lastIndexOf(':') + 1));
        this.configToml = configToml;
        Path logs = Path.of("target", "strata-logs");
        Files.createDirectories(logs);
        this.logFile = logs.resolve("strata-" + port + ".log").toAbsolutePath();
        start();
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    public String bootstrap() {
        return external.isEmpty() ? "127.0.0.1:" + port : external;
    }

    /**
     * True when the suite runs against another broker given by {@code -Dexternal.bootstrap=H:P}
     * (Apache Kafka as the oracle: scripts/kafka-peer), which this class neither starts nor kills.
     */
    public boolean isExternal() {
        return !external.isEmpty();
    }

    public Path dataDir() {
        return dataDir;
    }

    public void start() throws IOException {
        if (isExternal()) {
            return;
        }
        String bin = System.getProperty("strata.bin", "../../target/debug/strata");
        List<String> cmd = new ArrayList<>(List.of(new File(bin).getAbsolutePath(), "serve",
                "--data-dir", dataDir.toString(), "--listen", bootstrap()));
        if (configToml != null) {
            Path cfg = dataDir.resolveSibling(dataDir.getFileName() + ".toml");
            Files.writeString(cfg, configToml);
            cmd.add("--config");
            cmd.add(cfg.toString());
        }
        long seen = Files.exists(logFile) ? Files.size(logFile) : 0;
        process = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile())).start();
        Instant deadline = Instant.now().plus(Duration.ofSeconds(60));
        while (Instant.now().isBefore(deadline)) {
            if (!process.isAlive()) {
                throw new IllegalStateException("strata exited with " + process.exitValue() + ": " + tail());
            }
            byte[] all = Files.readAllBytes(logFile);
            String fresh = new String(all, (int) Math.min(seen, all.length), (int) (all.length - Math.min(seen, all.length)),
                    StandardCharsets.UTF_8);
            if (fresh.contains("listening on")) {
                return;
            }
            sleep(50);
        }
        throw new IllegalStateException("strata did not start listening: " + tail());
    }

    /** SIGKILL: no clean shutdown, nothing flushed that was not already synced. */
    public void kill9() throws InterruptedException {
        if (isExternal()) {
            throw new IllegalStateException("cannot kill an external broker");
        }
        process.destroyForcibly();
        process.waitFor();
    }

    public void stop() throws InterruptedException {
        if (!isExternal() && process != null && process.isAlive()) {
            process.destroy();
            if (!process.waitFor(20, java.util.concurrent.TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor();
            }
        }
    }

    public boolean alive() {
        return isExternal() || process.isAlive();
    }

    public String tail() {
        try {
            String s = Files.readString(logFile);
            return s.substring(Math.max(0, s.length() - 3000));
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    @Override
    public void close() throws Exception {
        stop();
        try (Stream<Path> walk = Files.walk(dataDir)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RuntimeException(e);
        }
    }
}
