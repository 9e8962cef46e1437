/** `nestjs-distributed-lock/redis`: the Redis backend (single node, Cluster, Sentinel, Redlock quorum). */
export { redisBackend } from './backends/redis/redis-backend.factory';
export type { RedisBackendOptions, RedisQuorumNode } from './backends/redis/redis-backend.options';
export type { ReplicaAcknowledgement } from './backends/redis/redis-lock.backend';
export { RedisLockBackend } from './backends/redis/redis-lock.backend';
export { RedisQuorumLockBackend } from './backends/redis/redis-quorum.backend';
