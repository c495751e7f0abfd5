// The browser build's system-gpu.ts: a browser has WebGPU as navigator.gpu or not at all.
import { DeviceError } from '../errors.js';

export function systemGPU(): Promise<GPU> {
  return Promise.reject(new DeviceError('no WebGPU in this browser: navigator.gpu is missing (WebGPU needs a browser that ships it and a secure context: https or localhost)'));
}
