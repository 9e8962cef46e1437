/** `nestjs-distributed-lock/redis`: the Redis backend (single node, Cluster, Sentinel, Redlock quorum). */
export { redisBackend } from './backends/redis/redis-backend.factory';
export type { RedisBackendOptions, RedisQuorumNode } from './backends/redis/redis-backend.options';
export type { ReplicaAcknowledgement } from './backends/redis/redis-replica-acknowledgement';
// The backend classes are types only: redisBackend() makes them.
export type { RedisLockBackend } from './backends/redis/redis-lock.backend';
export type { RedisQuorumLockBackend } from './backends/redis/redis-quorum.backend';
