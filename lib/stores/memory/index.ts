export { MemoryStore, type MemoryStoreOptions, type MemoryStoreStats } from './memory.store.js';
