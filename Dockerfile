# xsrouter container image: build stage, then a small runtime image running as non-root.
#   docker build -t xsrouter .
#   docker run -p 5000:5000 -v "$PWD/xs-app:/app:ro" -e destinations='[...]' xsrouter
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin xsrouter && strip target/release/xsrouter

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin xsrouter
COPY --from=build /src/target/release/xsrouter /usr/local/bin/xsrouter
USER 10001
WORKDIR /app
# As approuter: PORT, and the working directory holding xs-app.json (mount it at /app).
# Health and metrics on their own port, unreachable through routes.
ENV PORT=5000 XSROUTER_MANAGEMENT_PORT=9090
EXPOSE 5000 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/xsrouter", "health"]
ENTRYPOINT ["/usr/local/bin/xsrouter"]
CMD ["-w", "/app"]
