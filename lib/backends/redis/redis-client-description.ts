import type { Cluster, ClusterNode, Redis } from 'ioredis';

export type RedisClient = Redis | Cluster;

/** True for an ioredis `Cluster`. */
export function isCluster(client: RedisClient): client is Cluster {
  return (client as Cluster).isCluster === true;
}

/** A node of a startup list, as `host:port`, without any credentials it may carry. */
function describeNode(node: ClusterNode): string {
  if (typeof node === 'number') return `127.0.0.1:${node}`;
  if (typeof node === 'string') {
    if (/^\d+$/.test(node)) return `127.0.0.1:${node}`;
    try {
      const url = new URL(node.includes('://') ? node : `redis://${node}`);
      return `${url.hostname}:${url.port || 6379}`;
    } catch {
      return node.slice(node.lastIndexOf('@') + 1);
    }
  }
  return `${node.host ?? '127.0.0.1'}:${node.port ?? 6379}`;
}

/** Where a client connects, for error messages: host and port, never credentials. */
export function describeClient(client: RedisClient): string {
  if (isCluster(client)) {
    const nodes = ((client as unknown as { startupNodes?: ClusterNode[] }).startupNodes ?? []).map(describeNode);
    return `Redis Cluster (startup nodes ${nodes.join(', ')})`;
  }
  const options = client.options;
  if (options.sentinels && options.sentinels.length > 0) {
    const sentinels = options.sentinels.map((s) => `${s.host ?? '127.0.0.1'}:${s.port ?? 26379}`);
    return `Redis master "${options.name ?? 'mymaster'}" via Sentinel ${sentinels.join(', ')}`;
  }
  if (options.path) return `Redis at ${options.path}`;
  return `Redis at ${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
}

/** An error's message for ours; a Cluster's error adds the error of the node it last tried. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) {
    const last = (error as { lastNodeError?: unknown }).lastNodeError;
    return last instanceof Error ? `${error.message} (${last.message})` : error.message;
  }
  return String(error);
}
