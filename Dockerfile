# Multi-stage build: compile with the Rust toolchain, run on a slim Debian as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin maskd
# In a container the listeners must face the container network, not loopback.
COPY config.yaml ./
# Media too (its advertised address, which peers send RTP to, is the deployment's to set).
RUN sed -E 's/^(\s*listen: )"127\.0\.0\.1:/\1"0.0.0.0:/' config.yaml > /tmp/config.yaml \
 && sed -i -E 's#^(\s*path: )"\./data/maskd\.db"#\1"/var/lib/maskd/maskd.db"#' /tmp/config.yaml \
 && sed -i -E 's/^(\s*listen_ip: )"127\.0\.0\.1"/\1"0.0.0.0"/' /tmp/config.yaml

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/maskd --create-home maskd
COPY --from=build /src/target/release/maskd /usr/local/bin/maskd
COPY --from=build /tmp/config.yaml /etc/maskd/config.yaml
USER maskd
WORKDIR /var/lib/maskd
VOLUME ["/var/lib/maskd"]
EXPOSE 8080 9100 5060/udp 5060/tcp 2775 20000-29999/udp
RUN maskd check-config --config /etc/maskd/config.yaml
ENTRYPOINT ["/usr/local/bin/maskd"]
CMD ["run", "--config", "/etc/maskd/config.yaml"]
