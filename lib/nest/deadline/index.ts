export { DeadlineMiddleware } from './deadline.middleware.js';
export { deadlineAxiosInterceptor, deadlineHeaders, formatDeadline, parseDeadline, withDeadline } from './deadline-headers.js';
export type { DeadlineFormat, DeadlineHeaderOptions, DeadlinePropagationOptions } from './deadline.options.js';
