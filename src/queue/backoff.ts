/** The wait before attempt `attempts + 1`, from a schedule whose last step repeats. */
export function retryDelay(schedule: readonly number[], attempts: number): number {
  if (schedule.length === 0) throw new Error('empty retry schedule')
  return schedule[Math.min(Math.max(attempts - 1, 0), schedule.length - 1)] as number
}
